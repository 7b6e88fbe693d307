//! Sections -> a typed, validated `Conf`; every error names file, line and keyword.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::acl::{self, Acl, Cond};
use super::app::{self, AppConf};
use super::kv::{self, KvConf};
use super::parse::{self, did_you_mean, ConfError, ConfErrors, Directive, Section};
use super::sentinel::{self, SentinelConf};
use super::tls::{self, BindTls, ServerTls};
use super::vrrp::{self, VrrpConf};
use super::web::{self, WebConf};

#[path = "haproxy.rs"]
mod haproxy;
pub use super::rules::HttpRule;
pub use haproxy::{
    BackendHap, BindHap, CookieConf, CookieMode, Expect, FrontendHap, ServerHap, StickTableConf,
    TableKeyType, TcpCheckStep,
};

/// Everything one conf file describes.
#[derive(Debug, Clone)]
pub struct Conf {
    pub file: String,
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    pub kvs: Vec<KvConf>,
    pub webs: Vec<WebConf>,
    pub apps: Vec<AppConf>,
    pub vrrps: Vec<VrrpConf>,
    pub sentinels: Vec<SentinelConf>,
    pub warnings: Vec<ConfError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Worker threads; `None` = one per core.
    pub nbthread: Option<usize>,
    /// Concurrent client connections over all frontends.
    pub maxconn: usize,
    /// How long SIGTERM waits for open connections before exiting.
    pub timeout_drain: Duration,
    /// Largest HTTP request/response head (request line + headers), `tune.bufsize`.
    pub max_head_bytes: usize,
    /// Most header lines in one HTTP head, `tune.http.maxhdr`.
    pub max_headers: usize,
    /// The admin listener (`admin ADDR`): /metrics, /stats, runtime API.
    pub admin: Option<SocketAddr>,
    /// Line of the `admin` directive (0 without one).
    pub admin_line: usize,
    /// `admin-auth USER:PASSWORD`: HTTP basic auth on the admin listener.
    pub admin_auth: Option<String>,
    /// `admin-insecure`: allow a non-loopback admin address without auth.
    pub admin_insecure: bool,
    /// `access-log stdout|PATH`: one line per request or TCP connection.
    pub access_log: Option<LogSink>,
    /// `log-format default|json|"FORMAT"`.
    pub log_format: LogFormat,
    /// `tune.io-uring`: plain HTTP sockets through a per-worker io_uring.
    pub io_uring: IoUringTune,
    /// `tune.ssl.cachesize N`: TLS sessions each `bind ... ssl` remembers for
    /// resumption (0: none).
    pub ssl_cache_size: usize,
    /// `cpu-map` lines, in order (see `conf::cpumap`).
    pub cpu_map: Vec<super::cpumap::CpuMap>,
    /// `tune.h2.*`: HTTP/2 limits toward clients.
    pub h2: H2Tune,
    /// `spread-checks N` (HAProxy's): each wait between health checks varies
    /// by up to N percent (0..50).
    pub spread_checks: u32,
    /// `tune.max-checks-per-thread N` (HAProxy's): health checks in flight at
    /// once (all run on the control thread); 0: no limit.
    pub max_checks: usize,
}

/// HTTP/2 limits toward clients (`tune.h2.*`), each a defence against a
/// client that costs lb more than it costs the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Tune {
    /// `tune.h2.max-concurrent-streams` (HAProxy's name): streams a client may
    /// have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// `tune.h2.max-header-list-size`: largest decoded header list
    /// (SETTINGS_MAX_HEADER_LIST_SIZE); `None`: `tune.bufsize`, the HTTP/1
    /// head limit. Also bounds CONTINUATION frames per header block (the h2
    /// crate cuts a flood of them once the list is over this size).
    pub max_header_list_size: Option<u32>,
    /// `tune.h2.initial-window-size` (HAProxy's name): per-stream receive
    /// window, the request body bytes a client may send before lb reads them.
    pub initial_window_size: u32,
    /// `tune.h2.fe.glitches-threshold` (HAProxy's name): streams a client may
    /// reset before their answer (CVE-2023-44487, rapid reset) over one
    /// connection's life before the connection is cut; 0: no limit.
    pub glitches_threshold: u32,
    /// `tune.h2.fe.max-pending-resets`: streams reset by the client while
    /// waiting to be accepted (the h2 crate's rapid reset guard).
    pub max_pending_resets: usize,
    /// `tune.h2.fe.max-error-resets`: streams lb had to reset for the
    /// client's protocol errors before the connection is cut.
    pub max_error_resets: usize,
}

pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// RFC 9113's initial window.
pub const DEFAULT_H2_INITIAL_WINDOW_SIZE: u32 = 65_535;
pub const DEFAULT_H2_GLITCHES_THRESHOLD: u32 = 1000;
/// The h2 crate's default.
pub const DEFAULT_H2_MAX_PENDING_RESETS: usize = 20;
/// The h2 crate's default.
pub const DEFAULT_H2_MAX_ERROR_RESETS: usize = 1024;

impl Default for H2Tune {
    fn default() -> Self {
        H2Tune {
            max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            max_header_list_size: None,
            initial_window_size: DEFAULT_H2_INITIAL_WINDOW_SIZE,
            glitches_threshold: DEFAULT_H2_GLITCHES_THRESHOLD,
            max_pending_resets: DEFAULT_H2_MAX_PENDING_RESETS,
            max_error_resets: DEFAULT_H2_MAX_ERROR_RESETS,
        }
    }
}

impl Global {
    /// The decoded header list size an HTTP/2 client may send.
    pub fn h2_max_header_list_size(&self) -> u32 {
        self.h2
            .max_header_list_size
            .unwrap_or(u32::try_from(self.max_head_bytes).unwrap_or(u32::MAX))
    }
}

/// `tune.io-uring`: `on` tries a ring the kernel signals (`signal`), then one
/// that defers completions to the worker (`defer-taskrun`), each proven at
/// start; naming a mode tries only that one; `off` is epoll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoUringTune {
    Off,
    On,
    DeferTaskrun,
    Signal,
}

impl Global {
    /// Worker threads: `nbthread`, else one per core this process may use.
    pub fn threads(&self) -> usize {
        self.nbthread.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    File(String),
}

/// How access log lines look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// HAProxy-httplog-like text (see `accesslog::DEFAULT_FORMAT`).
    Default,
    /// One JSON object per line.
    Json,
    /// A custom format with `%` variables (validated at parse time).
    Custom(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Source,
    Random,
    /// HAProxy `balance uri|url_param|hdr(N)`: what is hashed is `hap.hash_on`.
    Hash,
    /// HAProxy `balance first`: the first server (conf order) with a free slot.
    First,
}

/// `option httpchk [METHOD] URI` and `http-check expect status N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub uri: String,
    /// Expected status; `None` = any 2xx or 3xx.
    pub expect_status: Option<u16>,
}

/// `option grpc-check [SERVICE]`: `grpc.health.v1.Health/Check` over HTTP/2
/// (h2c, or h2 with `check-ssl`), healthy when the answer is `SERVING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCheck {
    /// The `service` asked about; empty = the server as a whole.
    pub service: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub line: usize,
    pub addr: SocketAddr,
    /// `ssl crt ...` / `ssl self-signed ...`: TLS is terminated here.
    pub tls: Option<BindTls>,
    /// `proto h2`: clients speak HTTP/2 from their first byte (cleartext h2c
    /// with prior knowledge, or h2 alone over TLS whatever ALPN says).
    pub h2: bool,
    /// HAProxy bind options (`accept-proxy`).
    pub hap: BindHap,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub line: usize,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub default_backend: Option<String>,
    pub maxconn: usize,
    /// Idle time allowed on the client side.
    pub timeout_client: Duration,
    pub http: FrontendHttp,
    /// `tcp-request connection reject` rules, checked at accept before any read.
    pub tcp_rules: Vec<TcpRule>,
    /// `limit ...`: per-client-address limits.
    pub client_limits: ClientLimits,
    /// HAProxy settings: stick table, response rules, monitor-uri... (`conf::haproxy`).
    pub hap: FrontendHap,
}

/// `tcp-request connection reject [if|unless COND]`: the connection is closed at accept.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpRule {
    pub line: usize,
    pub cond: Option<Cond>,
}

/// `limit conn N`, `limit rate N/s`, `limit http-req-rate N/s`, `limit table-size N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Concurrent connections per client address (more are closed at accept).
    pub conn: Option<u32>,
    /// New connections per second per client address (more are closed at accept).
    pub rate: Option<u32>,
    /// Requests per second per client address (more get 429 with Retry-After).
    pub http_req_rate: Option<u32>,
    /// Most client addresses tracked at once (the table's memory bound).
    pub table_size: usize,
}

impl ClientLimits {
    /// True when any limit is set (a table is needed).
    pub fn any(&self) -> bool {
        self.conn.is_some() || self.rate.is_some() || self.http_req_rate.is_some()
    }
}

pub const DEFAULT_LIMIT_TABLE_SIZE: usize = 65_536;

/// HTTP-mode settings of a frontend.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendHttp {
    /// Time to receive a whole request head (408 after it).
    pub timeout_request: Duration,
    /// Time to wait for the next request on a kept-alive connection.
    pub timeout_keep_alive: Duration,
    /// Add X-Forwarded-For / X-Forwarded-Proto.
    pub forwardfor: bool,
    /// Largest request body accepted (413 beyond).
    pub max_body: Option<u64>,
    pub acls: Vec<Acl>,
    pub use_backends: Vec<UseBackend>,
    /// `http-request` rules, in order.
    pub rules: Vec<HttpRule>,
    /// Time allowed for a TLS handshake.
    pub timeout_handshake: Duration,
    /// `timeout http-body` and `http-body-min-rate`: slow request bodies.
    pub body: BodyRate,
}

/// How slowly a request body may arrive (as Apache's `RequestReadTimeout
/// body=20,MinRate=500`): `timeout` to start with, one more second for every
/// `min_rate` bytes received; only the time spent waiting for the client
/// counts. Past it: 408. A body trickled at 1 byte/s (slowloris on the body,
/// which no idle timeout catches) is cut; a client keeping `min_rate` never is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    /// `timeout http-body`; `None` (`timeout http-body off`): no limit.
    pub timeout: Option<Duration>,
    /// `http-body-min-rate` in bytes per second (0: the body has `timeout` in all).
    pub min_rate: u64,
}

impl Default for BodyRate {
    fn default() -> BodyRate {
        BodyRate {
            timeout: Some(Duration::from_secs(20)),
            min_rate: 500,
        }
    }
}

/// `use_backend NAME [if|unless COND]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UseBackend {
    pub line: usize,
    /// The name as written (for a dynamic rule, its log-format text).
    pub backend: String,
    /// `use_backend %[...]`: the backend's name, computed per request.
    pub dynamic: Option<super::sample::LogFmt>,
    /// Always true when the line has no condition.
    pub cond: Cond,
}

/// When idle server connections may carry a new request (HAProxy's `http-reuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Never: one server connection per request.
    Never,
    /// Reuse for every request but the first of a client connection, or any
    /// idempotent request (a failed reuse can then be retried safely).
    Safe,
    /// Any request may reuse an idle connection.
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub line: usize,
    pub mode: Mode,
    pub balance: Balance,
    pub servers: Vec<ServerConf>,
    /// Extra connect attempts after the first one fails.
    pub retries: u32,
    pub timeout_connect: Duration,
    /// Idle time allowed on the server side.
    pub timeout_server: Duration,
    /// A retried connect may go to another server (`option redispatch`).
    pub redispatch: bool,
    pub forwardfor: bool,
    pub reuse: Reuse,
    /// All backups share the load when no active server is up (else the first).
    pub allbackups: bool,
    /// HTTP health checks; `None` = TCP connect checks.
    pub httpchk: Option<HttpCheck>,
    /// `option grpc-check [SERVICE]`: gRPC health checks over HTTP/2
    /// (replaces `httpchk`; the last of the two in a section wins).
    pub grpc_check: Option<GrpcCheck>,
    /// Time allowed for one check (connect + response); default: `inter`.
    pub timeout_check: Option<Duration>,
    /// HAProxy settings: cookie persistence, stick table, tcp-check (`conf::haproxy`).
    pub hap: BackendHap,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConf {
    pub name: String,
    pub line: usize,
    pub addr: SocketAddr,
    /// The host as written (for TLS SNI).
    pub host: String,
    pub opts: ServerOpts,
}

/// Per-server settings; `default-server` sets the starting values.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOpts {
    pub weight: u32,
    pub backup: bool,
    pub disabled: bool,
    /// Idle keep-alive connections kept per server and worker thread.
    pub pool_max_conn: usize,
    /// How long an idle server connection is kept.
    pub pool_purge_delay: Duration,
    /// Active health checks.
    pub check: bool,
    /// Time between checks.
    pub inter: Duration,
    /// Time between checks while a transition is under way (default: `inter`).
    pub fastinter: Option<Duration>,
    /// Time between checks while down (default: `inter`).
    pub downinter: Option<Duration>,
    /// Consecutive successes to go up / failures to go down.
    pub rise: u32,
    pub fall: u32,
    /// Passive checks: 0 off, 4 `observe layer4`, 7 `observe layer7`.
    pub observe: u8,
    /// TLS to the server (`ssl`).
    pub tls: Option<ServerTls>,
    /// Health checks over TLS (`check-ssl`).
    pub check_ssl: bool,
    /// `proto h2`: HTTP/2 to the server with prior knowledge (h2c, or h2
    /// over `ssl`); `proto h1` (the default) is HTTP/1.1.
    pub proto: ServerProto,
    /// HAProxy server options: `cookie`, `send-proxy`, check `port` (`conf::haproxy`).
    pub hap: ServerHap,
}

/// Which HTTP version lb speaks to a server (`proto`, or `ssl alpn h2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerProto {
    H1,
    H2,
}

impl ServerOpts {
    /// Requests go to this server over HTTP/2: `proto h2`, or TLS with `alpn h2`.
    pub fn h2(&self) -> bool {
        self.proto == ServerProto::H2 || self.tls.as_ref().is_some_and(ServerTls::h2)
    }
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            weight: 1,
            backup: false,
            disabled: false,
            pool_max_conn: DEFAULT_POOL_MAX_CONN,
            pool_purge_delay: DEFAULT_POOL_PURGE_DELAY,
            check: false,
            inter: DEFAULT_INTER,
            fastinter: None,
            downinter: None,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            observe: 0,
            tls: None,
            check_ssl: false,
            proto: ServerProto::H1,
            hap: ServerHap::default(),
        }
    }
}

pub const DEFAULT_MAXCONN: usize = 10_000;
/// Default `tune.max-checks-per-thread`: health checks in flight at once.
pub const DEFAULT_MAX_CHECKS: usize = 256;
pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT_IDLE: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT_DRAIN: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 << 10;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_TIMEOUT_HTTP_REQUEST: Duration = Duration::from_secs(10);
/// As many idle server connections as the worker had busy: HAProxy keeps every
/// one by default too. A bound below the concurrency closes connections after
/// each burst and reopens them on the next, which for TLS servers means a
/// handshake each. `pool-purge-delay` trims them.
pub const DEFAULT_POOL_MAX_CONN: usize = DEFAULT_MAXCONN;
/// HAProxy's `tune.ssl.cachesize` default.
pub const DEFAULT_SSL_CACHE_SIZE: usize = 20_000;
pub const DEFAULT_POOL_PURGE_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_INTER: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;

const SECTIONS: &[&str] = &[
    "global", "defaults", "frontend", "backend", "listen", "kv", "web", "app", "vrrp", "sentinel",
];

/// HAProxy keywords that have no meaning for lb: accepted with a warning.
const IGNORED: &[&str] = &[
    "daemon",
    "log",
    "chroot",
    "user",
    "group",
    "pidfile",
    "uid",
    "gid",
    "nbproc",
    "ulimit-n",
    "master-worker",
    "log-send-hostname",
    "description",
];

/// HAProxy keywords lb does not implement: an error that says so, never silence.
const UNSUPPORTED: &[&str] = &[
    "tcp-response",
    "dispatch",
    "source",
    "filter",
    "use-server",
    "http-send-name-header",
    "declare",
];

// Where a proxy keyword may appear.
const D: u8 = 1;
const F: u8 = 2;
const B: u8 = 4;
const L: u8 = 8;

const PROXY_KEYWORDS: &[(&str, u8)] = &[
    ("bind", F | L),
    ("mode", D | F | B | L),
    ("default_backend", D | F | L),
    ("balance", D | B | L),
    ("server", B | L),
    ("default-server", D | B | L),
    ("timeout", D | F | B | L),
    ("maxconn", D | F | L),
    ("http-body-min-rate", D | F | L),
    ("retries", D | B | L),
    ("option", D | F | B | L),
    ("http-reuse", D | B | L),
    ("acl", F | L),
    ("use_backend", F | L),
    ("max-body-size", D | F | L),
    ("http-check", D | B | L),
    ("http-request", F | L),
    ("tcp-request", F | L),
    ("limit", D | F | L),
];

/// `option` names: (name, where allowed, effect).
const OPTIONS: &[&str] = &[
    "forwardfor",
    "redispatch",
    "allbackups",
    "httpchk",
    "grpc-check",
    "http-keep-alive",
    "splice-auto",
    "splice-request",
    "splice-response",
    "httplog",
    "tcplog",
    "dontlognull",
];

const GLOBAL_KEYWORDS: &[&str] = &[
    "nbthread",
    "maxconn",
    "timeout",
    "tune.bufsize",
    "tune.http.maxhdr",
    "tune.io-uring",
    "tune.ssl.cachesize",
    "tune.h2.max-concurrent-streams",
    "tune.h2.max-header-list-size",
    "tune.h2.initial-window-size",
    "tune.h2.fe.glitches-threshold",
    "tune.h2.fe.max-pending-resets",
    "tune.h2.fe.max-error-resets",
    "admin",
    "admin-auth",
    "admin-insecure",
    "access-log",
    "log-format",
    "cpu-map",
    "spread-checks",
    "tune.max-checks-per-thread",
];

/// Parses and validates a conf file's text. `file` is used in messages only.
/// All errors are reported, in line order: a bad line or section is skipped
/// and parsing goes on.
pub fn parse_conf(file: &str, text: &str) -> Result<Conf, ConfErrors> {
    let (sections, lex_errors) = parse::sections(text);
    let mut b = Builder {
        file: file.to_string(),
        conf: Conf {
            file: file.to_string(),
            global: Global {
                nbthread: None,
                maxconn: DEFAULT_MAXCONN,
                timeout_drain: DEFAULT_TIMEOUT_DRAIN,
                max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
                max_headers: DEFAULT_MAX_HEADERS,
                admin: None,
                admin_line: 0,
                admin_auth: None,
                admin_insecure: false,
                access_log: None,
                log_format: LogFormat::Default,
                io_uring: IoUringTune::On,
                ssl_cache_size: DEFAULT_SSL_CACHE_SIZE,
                cpu_map: Vec::new(),
                h2: H2Tune::default(),
                spread_checks: 0,
                max_checks: DEFAULT_MAX_CHECKS,
            },
            frontends: Vec::new(),
            backends: Vec::new(),
            kvs: Vec::new(),
            webs: Vec::new(),
            apps: Vec::new(),
            vrrps: Vec::new(),
            sentinels: Vec::new(),
            warnings: Vec::new(),
        },
        defaults: Draft::builtin(),
        default_backend_refs: Vec::new(),
        errors: Vec::new(),
        broken: HashSet::new(),
        mode_unknown_frontends: HashSet::new(),
        mode_unknown_backends: HashSet::new(),
        failed_global: HashSet::new(),
        hap: haproxy::HapGlobal::default(),
    };
    for (i, s) in sections.iter().enumerate() {
        if s.lexed_badly {
            b.placeholder(s);
            continue;
        }
        let end = sections.get(i + 1).map_or(usize::MAX, |n| n.line);
        // A line the lexer dropped may be the one a completeness check looks for.
        let lexed_badly = lex_errors.iter().any(|(l, _)| (s.line..end).contains(l));
        let before = b.errors.len();
        if let Err(e) = b.section(s, lexed_badly) {
            b.errors.push(e);
        }
        if lexed_badly || b.errors.len() > before {
            if let Some(name) = s.args.first() {
                b.broken.insert(name.clone());
            }
        }
    }
    for (line, msg) in lex_errors {
        let e = b.err(line, msg);
        b.errors.push(e);
    }
    b.validate();
    if b.errors.is_empty() {
        return Ok(b.conf);
    }
    b.errors.sort_by_key(|e| e.line);
    Err(ConfErrors(b.errors))
}

/// Reads and parses a conf file.
pub fn load(path: &str) -> Result<Conf, ConfErrors> {
    let bytes = std::fs::read(path).map_err(|e| ConfError {
        file: path.to_string(),
        line: 0,
        msg: format!("cannot read conf file: {e}"),
    })?;
    // Non-UTF-8 bytes: fine in comments, `FILE:LINE` elsewhere.
    let (text, bad) = parse::decode(&bytes);
    match parse_conf(path, &text) {
        Ok(c) if bad.is_empty() => Ok(c),
        r => {
            let mut errs: Vec<ConfError> = bad
                .into_iter()
                .map(|(line, msg)| ConfError {
                    file: path.to_string(),
                    line,
                    msg,
                })
                .collect();
            errs.extend(r.err().map(|e| e.0).unwrap_or_default());
            errs.sort_by_key(|e| e.line);
            Err(ConfErrors(errs))
        }
    }
}

/// Settings of a frontend/backend/listen under construction; `defaults` is one too.
#[derive(Debug, Clone)]
struct Draft {
    mode: Mode,
    /// A `mode` line failed (here or in the defaults this came from), or a line
    /// that failed to lex may have been one: checks that depend on the mode are
    /// skipped rather than made against the default.
    mode_unknown: bool,
    balance: Balance,
    binds: Vec<Bind>,
    default_backend: Option<(usize, String)>,
    servers: Vec<ServerConf>,
    server_opts: ServerOpts,
    timeout_connect: Duration,
    timeout_client: Duration,
    timeout_server: Duration,
    maxconn: Option<usize>,
    retries: u32,
    timeout_http_request: Option<Duration>,
    timeout_keep_alive: Option<Duration>,
    forwardfor: bool,
    redispatch: bool,
    reuse: Reuse,
    max_body: Option<u64>,
    acls: Vec<Acl>,
    use_backends: Vec<UseBackend>,
    rules: Vec<HttpRule>,
    timeout_handshake: Option<Duration>,
    allbackups: bool,
    httpchk: Option<HttpCheck>,
    grpc_check: Option<GrpcCheck>,
    expect_status: Option<u16>,
    timeout_check: Option<Duration>,
    tcp_rules: Vec<TcpRule>,
    client_limits: ClientLimits,
    body: BodyRate,
    hap_f: FrontendHap,
    hap_b: BackendHap,
}

impl Draft {
    fn builtin() -> Draft {
        Draft {
            mode: Mode::Tcp,
            mode_unknown: false,
            balance: Balance::RoundRobin,
            binds: Vec::new(),
            default_backend: None,
            servers: Vec::new(),
            server_opts: ServerOpts::default(),
            timeout_connect: DEFAULT_TIMEOUT_CONNECT,
            timeout_client: DEFAULT_TIMEOUT_IDLE,
            timeout_server: DEFAULT_TIMEOUT_IDLE,
            maxconn: None,
            retries: DEFAULT_RETRIES,
            timeout_http_request: None,
            timeout_keep_alive: None,
            forwardfor: false,
            redispatch: false,
            reuse: Reuse::Safe,
            max_body: None,
            acls: Vec::new(),
            use_backends: Vec::new(),
            rules: Vec::new(),
            timeout_handshake: None,
            allbackups: false,
            httpchk: None,
            grpc_check: None,
            expect_status: None,
            timeout_check: None,
            tcp_rules: Vec::new(),
            body: BodyRate::default(),
            client_limits: ClientLimits {
                conn: None,
                rate: None,
                http_req_rate: None,
                table_size: DEFAULT_LIMIT_TABLE_SIZE,
            },
            hap_f: FrontendHap::default(),
            hap_b: BackendHap::default(),
        }
    }
}

struct Builder {
    file: String,
    conf: Conf,
    defaults: Draft,
    /// (frontend name, line, backend name) to check once every backend is known.
    default_backend_refs: Vec<(String, usize, String)>,
    errors: Vec<ConfError>,
    /// Names of sections that had errors: references to them are not reported
    /// again as unknown or mismatched.
    broken: HashSet<String>,
    /// Frontends and backends (listens are both) whose mode is unknown (see
    /// `Draft::mode_unknown`): no mode mismatch is reported for them.
    mode_unknown_frontends: HashSet<String>,
    mode_unknown_backends: HashSet<String>,
    /// Global keywords of lines that failed: checks that depend on their values
    /// (cpu-map on nbthread, admin on admin-auth) are skipped.
    failed_global: HashSet<&'static str>,
    /// HAProxy global path settings (`crt-base`, `ca-base`, `default-path`).
    hap: haproxy::HapGlobal,
}

impl Builder {
    /// The conf file's directory: relative paths in the conf are resolved against it.
    fn base(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.file)
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .to_path_buf()
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> ConfError {
        ConfError {
            file: self.file.clone(),
            line,
            msg: msg.into(),
        }
    }

    fn warn(&mut self, line: usize, msg: impl Into<String>) {
        let w = self.err(line, msg);
        self.conf.warnings.push(w);
    }

    /// Records a directive's error and says whether there was one.
    fn keep(&mut self, r: Result<(), ConfError>) -> bool {
        match r {
            Ok(()) => false,
            Err(e) => {
                self.errors.push(e);
                true
            }
        }
    }

    /// A section whose header line failed to lex: only that error is reported
    /// (the lexer's). Its lines are not read, since what they belong to is unknown,
    /// and references to its likely name are not reported again.
    fn placeholder(&mut self, s: &Section) {
        if let Some(name) = s.args.first() {
            self.broken.insert(name.clone());
        }
        if s.kind == "defaults" {
            // Sections after it would not have had the previous defaults, nor
            // perhaps the built-in mode.
            self.defaults = Draft {
                mode_unknown: true,
                ..Draft::builtin()
            };
        }
    }

    /// Header errors are returned; directive errors are recorded and the
    /// section goes on. Checks that a section is complete (a `bind` line, ...)
    /// are skipped when a line of it failed: the failed line may be the missing one.
    fn section(&mut self, s: &Section, lexed_badly: bool) -> Result<(), ConfError> {
        let kind = s.kind.as_str();
        let name_required = matches!(
            kind,
            "frontend" | "backend" | "listen" | "kv" | "web" | "app" | "vrrp" | "sentinel"
        );
        match kind {
            "global" | "defaults" => {
                if !s.args.is_empty() && kind == "global" {
                    return Err(self.err(s.line, "'global' takes no name"));
                }
                if s.args.len() > 1 {
                    return Err(self.err(s.line, format!("'{kind}' takes at most one name")));
                }
            }
            _ if name_required => match s.args.len() {
                0 => return Err(self.err(s.line, format!("'{kind}' needs a name"))),
                1 => {}
                _ => {
                    return Err(self.err(
                        s.line,
                        format!("'{kind}' takes one name, got extra '{}'", s.args[1]),
                    ))
                }
            },
            _ => {
                if kind == "resolvers" {
                    self.hap_resolvers(s.line, s.args.first(), &s.directives);
                    return Ok(());
                }
                if kind == "http-errors" {
                    self.hap_http_errors(s.line, s.args.first(), &s.directives);
                    return Ok(());
                }
                if let Some((_, why)) = haproxy::SECTION_WARN.iter().find(|(k, _)| *k == kind) {
                    self.warn(
                        s.line,
                        format!("section '{kind}' has no effect in lb: {why}"),
                    );
                    return Ok(());
                }
                if let Some((_, why)) = haproxy::SECTION_ERR.iter().find(|(k, _)| *k == kind) {
                    return Err(self.err(
                        s.line,
                        format!("section '{kind}' is not implemented: {why}"),
                    ));
                }
                return Err(self.err(
                    s.line,
                    format!("unknown section '{kind}'{}", did_you_mean(kind, SECTIONS)),
                ));
            }
        }
        match kind {
            "global" => {
                for d in &s.directives {
                    let r = self.global(d);
                    if self.keep(r) {
                        if let Some(kw) = meant(d.keyword(), GLOBAL_KEYWORDS) {
                            self.failed_global.insert(kw);
                        }
                    }
                }
                if lexed_badly {
                    // The line that failed to lex may have been any of them.
                    self.failed_global
                        .extend(["nbthread", "admin-auth", "admin-insecure"]);
                }
                Ok(())
            }
            "defaults" => {
                let mut d = Draft::builtin();
                for dir in &s.directives {
                    let r = self.proxy_directive(D, "defaults", dir, &mut d);
                    if self.keep(r) && meant_proxy(dir.keyword()) == Some("mode") {
                        d.mode_unknown = true;
                    }
                }
                d.mode_unknown |= lexed_badly;
                self.defaults = d;
                Ok(())
            }
            "frontend" | "backend" | "listen" => self.proxy(s, lexed_badly),
            "kv" => {
                let mut k = KvConf::new(s.args[0].clone(), s.line);
                self.other_section(s, lexed_badly, &mut k, kv::directive, kv::finish);
                let names = self.conf.kvs.iter().map(|x| x.name.as_str());
                self.check_dup(s.line, "kv", &k.name, names)?;
                self.conf.kvs.push(k);
                Ok(())
            }
            "web" => {
                let mut w = WebConf::new(s.args[0].clone(), s.line);
                // Relative roots are resolved against the conf file's directory.
                let base = self.base();
                let parse = |w: &mut WebConf, d: &Directive| web::directive(w, d, &base);
                self.other_section(s, lexed_badly, &mut w, parse, web::finish);
                // Without a root line (or with one that failed) there is no root to check.
                if w.line_root != 0 {
                    let r = web::check_root(&w).map_err(|m| self.err(w.line_root, m));
                    self.keep(r);
                }
                let names = self.conf.webs.iter().map(|x| x.name.as_str());
                self.check_dup(s.line, "web", &w.name, names)?;
                self.conf.webs.push(w);
                Ok(())
            }
            "app" => {
                let mut a = AppConf::new(s.args[0].clone(), s.line);
                self.other_section(s, lexed_badly, &mut a, app::directive, app::finish);
                let names = self.conf.apps.iter().map(|x| x.name.as_str());
                self.check_dup(s.line, "app", &a.name, names)?;
                self.conf.apps.push(a);
                Ok(())
            }
            "vrrp" => {
                let mut v = VrrpConf::new(s.args[0].clone(), s.line);
                self.other_section(s, lexed_badly, &mut v, vrrp::directive, vrrp::finish);
                let names = self.conf.vrrps.iter().map(|x| x.name.as_str());
                self.check_dup(s.line, "vrrp", &v.name, names)?;
                self.conf.vrrps.push(v);
                Ok(())
            }
            "sentinel" => {
                let mut t = SentinelConf::new(s.args[0].clone(), s.line);
                self.other_section(
                    s,
                    lexed_badly,
                    &mut t,
                    sentinel::directive,
                    sentinel::finish,
                );
                let names = self.conf.sentinels.iter().map(|x| x.name.as_str());
                self.check_dup(s.line, "sentinel", &t.name, names)?;
                self.conf.sentinels.push(t);
                Ok(())
            }
            _ => unreachable!("section kinds are checked above"),
        }
    }

    /// Reads the lines of a kv, web or app section into `item`, recording their
    /// errors. `finish` (is the section complete?) runs only when none failed:
    /// a failed line may be the one it finds missing. The section is kept even
    /// when incomplete, so that checks across sections (a duplicate name, an
    /// address bound twice) still see it; the conf is refused anyway.
    fn other_section<T>(
        &mut self,
        s: &Section,
        lexed_badly: bool,
        item: &mut T,
        mut parse: impl FnMut(&mut T, &Directive) -> Result<(), String>,
        finish: impl FnOnce(&T) -> Result<(), String>,
    ) {
        let mut failed = lexed_badly;
        for d in &s.directives {
            let r = self.other_directive(d, |d| parse(item, d));
            failed |= self.keep(r);
        }
        if !failed {
            let r = finish(item).map_err(|m| self.err(s.line, m));
            self.keep(r);
        }
    }

    /// One directive of a kv, web or app section, parsed by `parse` unless an
    /// HAProxy-only keyword.
    fn other_directive(
        &mut self,
        d: &Directive,
        parse: impl FnOnce(&Directive) -> Result<(), String>,
    ) -> Result<(), ConfError> {
        if self.ignored_or_unsupported(d)? {
            return Ok(());
        }
        parse(d).map_err(|m| self.err(d.line, m))
    }

    /// True when the keyword is a warning-only HAProxy keyword; an error if unsupported.
    fn ignored_or_unsupported(&mut self, d: &Directive) -> Result<bool, ConfError> {
        let kw = d.keyword();
        if IGNORED.contains(&kw) {
            self.warn(d.line, format!("'{kw}' has no effect in lb; ignored"));
            return Ok(true);
        }
        if UNSUPPORTED.contains(&kw) {
            return Err(self.err(
                d.line,
                format!("'{kw}' is an HAProxy keyword that lb does not implement"),
            ));
        }
        Ok(false)
    }

    fn global(&mut self, d: &Directive) -> Result<(), ConfError> {
        {
            if let Some(r) = self.hap_global(d) {
                return r;
            }
            if self.ignored_or_unsupported(d)? {
                return Ok(());
            }
            let a = &d.args;
            let e = |m: String| self.err(d.line, format!("'{}': {m}", a[0]));
            match d.keyword() {
                "nbthread" => {
                    let v = one_arg(a).map_err(e)?;
                    let n = parse::number(v, 1, 1024).map_err(e)?;
                    self.conf.global.nbthread = Some(n as usize);
                }
                "maxconn" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.maxconn = parse::number(v, 1, 10_000_000).map_err(e)? as usize;
                }
                "timeout" => {
                    let (which, v) = two_args(a).map_err(e)?;
                    if which != "drain" {
                        return Err(e(format!(
                            "unknown timeout '{which}' in global (only 'drain')"
                        )));
                    }
                    self.conf.global.timeout_drain = parse::duration(v).map_err(e)?;
                }
                "tune.bufsize" => {
                    let v = one_arg(a).map_err(e)?;
                    let n = parse::size(v).map_err(e)?;
                    if !(1024..=(1 << 20)).contains(&n) {
                        return Err(e(format!("{n} is out of range (1k..1m)")));
                    }
                    self.conf.global.max_head_bytes = n as usize;
                }
                "tune.io-uring" => {
                    self.conf.global.io_uring = match one_arg(a).map_err(e)? {
                        "on" => IoUringTune::On,
                        "off" => IoUringTune::Off,
                        "defer-taskrun" => IoUringTune::DeferTaskrun,
                        "signal" => IoUringTune::Signal,
                        v => {
                            return Err(e(format!(
                                "expected on, off, defer-taskrun or signal, got '{v}'"
                            )))
                        }
                    };
                }
                "tune.ssl.cachesize" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.ssl_cache_size =
                        parse::number(v, 0, 10_000_000).map_err(e)? as usize;
                }
                "spread-checks" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.spread_checks = parse::number(v, 0, 50).map_err(e)? as u32;
                }
                "tune.max-checks-per-thread" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.max_checks =
                        parse::number(v, 0, 1_000_000).map_err(e)? as usize;
                }
                "tune.http.maxhdr" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.max_headers = parse::number(v, 1, 1000).map_err(e)? as usize;
                }
                "tune.h2.max-concurrent-streams" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.h2.max_concurrent_streams =
                        parse::number(v, 1, 10_000).map_err(e)? as u32;
                }
                "tune.h2.max-header-list-size" => {
                    let v = one_arg(a).map_err(e)?;
                    let n = parse::size(v).map_err(e)?;
                    if !(1024..=(1 << 20)).contains(&n) {
                        return Err(e(format!("{n} is out of range (1k..1m)")));
                    }
                    self.conf.global.h2.max_header_list_size = Some(n as u32);
                }
                "tune.h2.initial-window-size" => {
                    let v = one_arg(a).map_err(e)?;
                    let n = parse::size(v).map_err(e)?;
                    // RFC 9113 6.5.2: at most 2^31-1; below 1k a body crawls.
                    if !(1024..=(1 << 31) - 1).contains(&n) {
                        return Err(e(format!("{n} is out of range (1k..2147483647)")));
                    }
                    self.conf.global.h2.initial_window_size = n as u32;
                }
                "tune.h2.fe.glitches-threshold" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.h2.glitches_threshold =
                        parse::number(v, 0, 10_000_000).map_err(e)? as u32;
                }
                "tune.h2.fe.max-pending-resets" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.h2.max_pending_resets =
                        parse::number(v, 1, 100_000).map_err(e)? as usize;
                }
                "tune.h2.fe.max-error-resets" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.h2.max_error_resets =
                        parse::number(v, 1, 100_000).map_err(e)? as usize;
                }
                "admin" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.admin = Some(parse::bind_addr(v).map_err(e)?);
                    self.conf.global.admin_line = d.line;
                }
                "admin-auth" => {
                    let v = one_arg(a).map_err(e)?;
                    match v.split_once(':') {
                        Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                            self.conf.global.admin_auth = Some(v.to_string())
                        }
                        _ => return Err(e(format!("expected USER:PASSWORD, got '{v}'"))),
                    }
                }
                "admin-insecure" => {
                    if a.len() > 1 {
                        return Err(e(format!("unexpected extra argument '{}'", a[1])));
                    }
                    self.conf.global.admin_insecure = true;
                }
                "access-log" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.access_log = Some(match v {
                        "stdout" => LogSink::Stdout,
                        "" => return Err(e("empty path".into())),
                        path => {
                            // Opened (created) at start: its directory must be there.
                            let p = std::path::Path::new(path);
                            if p.is_dir() {
                                return Err(e(format!("'{path}' is a directory")));
                            }
                            match p.parent() {
                                Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => {
                                    return Err(e(format!(
                                        "directory '{}' does not exist",
                                        d.display()
                                    )))
                                }
                                _ => LogSink::File(path.to_string()),
                            }
                        }
                    });
                }
                "log-format" => {
                    let v = one_arg(a).map_err(e)?;
                    self.conf.global.log_format = match v {
                        "default" => LogFormat::Default,
                        "json" => LogFormat::Json,
                        f => {
                            super::logformat::Format::parse(f).map_err(e)?;
                            LogFormat::Custom(f.to_string())
                        }
                    };
                }
                "cpu-map" => {
                    let m = super::cpumap::parse(&a[1..], d.line).map_err(e)?;
                    self.conf.global.cpu_map.push(m);
                }
                kw => {
                    return Err(self.err(
                        d.line,
                        format!(
                            "unknown keyword '{kw}' in global section{}",
                            did_you_mean(kw, GLOBAL_KEYWORDS)
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    fn proxy(&mut self, s: &Section, lexed_badly: bool) -> Result<(), ConfError> {
        let (mask, kind) = match s.kind.as_str() {
            "frontend" => (F, "frontend"),
            "backend" => (B, "backend"),
            _ => (L, "listen"),
        };
        let name = s.args[0].clone();
        let mut d = self.defaults.clone();
        // Servers and binds never come from defaults.
        d.binds.clear();
        d.servers.clear();
        if mask != F {
            // defaults' default_backend is for frontends; a listen is its own backend.
            d.default_backend = None;
        }
        let mut failed = lexed_badly;
        // `acl NAME ...` (or a misspelt `acl`) that failed: conditions naming it
        // are not reported again.
        let mut failed_names: Vec<String> = Vec::new();
        for dir in &s.directives {
            let r = self.proxy_directive(mask, kind, dir, &mut d);
            if self.keep(r) {
                failed = true;
                match meant_proxy(dir.keyword()) {
                    Some("mode") => d.mode_unknown = true,
                    Some("acl") => failed_names.extend(dir.args.get(1).cloned()),
                    _ => {}
                }
            }
        }
        d.mode_unknown |= lexed_badly;
        if d.mode_unknown {
            if mask & (F | L) != 0 {
                self.mode_unknown_frontends.insert(name.clone());
            }
            if mask & (B | L) != 0 {
                self.mode_unknown_backends.insert(name.clone());
            }
        } else {
            self.check_mode_needs(&d);
            self.check_server_protos(&d);
        }
        self.hap_finish(&d);
        if mask & (F | L) != 0 {
            if d.binds.is_empty() {
                if failed {
                    return Ok(());
                }
                return Err(self.err(s.line, format!("{kind} '{name}' has no 'bind' line")));
            }
            self.check_dup(
                s.line,
                "frontend",
                &name,
                self.conf.frontends.iter().map(|f| f.name.as_str()),
            )?;
            let default_backend = if mask == L {
                if let Some((line, _)) = &d.default_backend {
                    return Err(self.err(
                        *line,
                        "'default_backend' is not allowed in a listen section (it is its own backend)",
                    ));
                }
                Some(name.clone())
            } else {
                d.default_backend.as_ref().map(|(l, b)| {
                    self.default_backend_refs
                        .push((name.clone(), *l, b.clone()));
                    b.clone()
                })
            };
            self.conf.frontends.push(Frontend {
                name: name.clone(),
                line: s.line,
                mode: d.mode,
                binds: d.binds.clone(),
                default_backend,
                maxconn: d.maxconn.unwrap_or(self.conf.global.maxconn),
                timeout_client: d.timeout_client,
                http: FrontendHttp {
                    // As in HAProxy, unset http timeouts fall back: request ->
                    // client (capped at 10s default), keep-alive -> request.
                    timeout_request: d
                        .timeout_http_request
                        .unwrap_or(DEFAULT_TIMEOUT_HTTP_REQUEST.min(d.timeout_client)),
                    timeout_keep_alive: d
                        .timeout_keep_alive
                        .or(d.timeout_http_request)
                        .unwrap_or(DEFAULT_TIMEOUT_HTTP_REQUEST.min(d.timeout_client)),
                    forwardfor: d.forwardfor,
                    max_body: d.max_body,
                    acls: d.acls.clone(),
                    use_backends: d.use_backends.clone(),
                    rules: d.rules.clone(),
                    timeout_handshake: d
                        .timeout_handshake
                        .unwrap_or(DEFAULT_TIMEOUT_HTTP_REQUEST.min(d.timeout_client)),
                    body: d.body,
                },
                tcp_rules: d.tcp_rules.clone(),
                client_limits: d.client_limits,
                hap: d.hap_f.clone(),
            });
            self.check_acls(&name, &d, &failed_names);
            self.check_edge(&name, s.line, &d);
            for u in d.use_backends.iter().filter(|u| u.dynamic.is_none()) {
                self.default_backend_refs
                    .push((name.clone(), u.line, u.backend.clone()));
            }
        }
        if mask & (B | L) != 0 {
            self.check_dup(
                s.line,
                "backend",
                &name,
                self.conf.backends.iter().map(|b| b.name.as_str()),
            )?;
            self.conf.backends.push(Backend {
                name,
                line: s.line,
                mode: d.mode,
                balance: d.balance,
                servers: d.servers,
                retries: d.retries,
                timeout_connect: d.timeout_connect,
                timeout_server: d.timeout_server,
                redispatch: d.redispatch,
                forwardfor: d.forwardfor,
                reuse: d.reuse,
                allbackups: d.allbackups,
                httpchk: d.httpchk.clone().map(|h| HttpCheck {
                    expect_status: d.expect_status,
                    ..h
                }),
                grpc_check: d.grpc_check.clone(),
                timeout_check: d.timeout_check,
                hap: d.hap_b.clone(),
            });
        }
        Ok(())
    }

    /// `proto h2` needs mode http (in mode tcp lb passes bytes, whatever the
    /// protocol); in mode http a server's ALPN names only what lb speaks.
    fn check_server_protos(&mut self, d: &Draft) {
        for s in &d.servers {
            let why = if d.mode != Mode::Http {
                (s.opts.proto == ServerProto::H2).then(|| {
                    "'proto h2' needs mode http (in mode tcp lb passes the bytes as they are)"
                        .to_string()
                })
            } else {
                let alpn = s.opts.tls.as_ref().map_or(&[][..], |t| &t.alpn[..]);
                alpn.iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .find(|p| !SERVER_HTTP_ALPN.contains(&p.as_ref()))
                    .map(|p| {
                        format!(
                            "alpn '{p}': lb does not speak '{p}' to servers (mode http speaks {})",
                            SERVER_HTTP_ALPN.join(", ")
                        )
                    })
            };
            // One pipeline path per backend: its servers agree.
            let why = why.or_else(|| {
                let first = d.servers.first()?;
                (d.mode == Mode::Http && s.opts.h2() != first.opts.h2()).then(|| {
                    let v = |h2: bool| if h2 { "HTTP/2" } else { "HTTP/1.1" };
                    format!(
                        "a backend's servers speak one HTTP version: '{}' speaks {}, '{}' {}",
                        first.name,
                        v(first.opts.h2()),
                        s.name,
                        v(s.opts.h2())
                    )
                })
            });
            if let Some(why) = why {
                let e = self.err(s.line, format!("'server': {why}"));
                self.errors.push(e);
            }
        }
    }

    /// Options whose meaning depends on the section's mode, known once the
    /// whole section is read: refused here rather than failing every request.
    fn check_mode_needs(&mut self, d: &Draft) {
        if d.mode == Mode::Http {
            for b in &d.binds {
                let Some(t) = &b.tls else { continue };
                for p in &t.alpn {
                    let p = String::from_utf8_lossy(p);
                    if tls::HTTP_ALPN.contains(&p.as_ref()) {
                        continue;
                    }
                    let e = self.err(
                        b.line,
                        format!(
                            "'bind': alpn '{p}': lb does not speak '{p}' (mode http speaks {})",
                            tls::HTTP_ALPN.join(", ")
                        ),
                    );
                    self.errors.push(e);
                }
            }
        } else {
            for b in d.binds.iter().filter(|b| b.h2) {
                let e = self.err(
                    b.line,
                    "'bind': 'proto h2' needs mode http (in mode tcp bytes pass as they are)",
                );
                self.errors.push(e);
            }
            for s in &d.servers {
                if s.opts.tls.as_ref().is_some_and(|t| t.sni_from_request) {
                    let e = self.err(
                        s.line,
                        "'server': 'sni req.hdr(host)' needs mode http (in mode tcp there is no request)",
                    );
                    self.errors.push(e);
                }
            }
        }
    }

    /// Every acl a condition names must be defined in the same section (or be
    /// a built-in fetch such as `ssl_fc`).
    fn check_acls(&mut self, section: &str, d: &Draft, failed_names: &[String]) {
        let conds = d
            .use_backends
            .iter()
            .map(|u| (u.line, "use_backend", Some(&u.cond)))
            .chain(
                d.rules
                    .iter()
                    .map(|r| (r.line, "http-request", r.cond.as_ref())),
            )
            .chain(
                d.hap_f
                    .res_rules
                    .iter()
                    .map(|r| (r.line, "http-response", r.cond.as_ref())),
            )
            .chain(
                d.hap_f
                    .after_rules
                    .iter()
                    .map(|r| (r.line, "http-after-response", r.cond.as_ref())),
            )
            .chain(
                d.tcp_rules
                    .iter()
                    .map(|r| (r.line, "tcp-request", r.cond.as_ref())),
            );
        for (line, kw, cond) in conds {
            let Some(cond) = cond else { continue };
            for n in cond.names() {
                if !d.acls.iter().any(|a| a.name == n)
                    && !acl::BUILTIN.contains(&n)
                    && !failed_names.iter().any(|f| f == n)
                {
                    let mut names: Vec<&str> = d.acls.iter().map(|a| a.name.as_str()).collect();
                    names.extend(acl::BUILTIN);
                    let e = self.err(
                        line,
                        format!(
                            "'{kw}': acl '{n}' is not defined in '{section}'{}",
                            did_you_mean(n, &names)
                        ),
                    );
                    self.errors.push(e);
                }
            }
        }
    }

    /// `tcp-request` rules run before any byte is read: only `src` acls can decide them.
    /// `limit http-req-rate` counts HTTP requests: only in mode http.
    fn check_edge(&mut self, section: &str, line: usize, d: &Draft) {
        for r in &d.tcp_rules {
            let Some(cond) = &r.cond else { continue };
            if cond
                .names()
                .any(|n| n == "ssl_fc" && !d.acls.iter().any(|a| a.name == n))
            {
                let e = self.err(
                    r.line,
                    "'tcp-request connection': 'ssl_fc' is not known before the handshake",
                );
                self.errors.push(e);
            } else if let Some(a) = cond.acls(&d.acls).find(|a| !a.at_accept()) {
                let e = self.err(
                    r.line,
                    format!(
                        "'tcp-request connection': acl '{}' looks at the request; only 'src' acls can be used before any byte is read",
                        a.name
                    ),
                );
                self.errors.push(e);
            }
        }
        if d.client_limits.http_req_rate.is_some() && d.mode != Mode::Http && !d.mode_unknown {
            let e = self.err(
                line,
                format!("'limit http-req-rate' in '{section}' needs 'mode http'"),
            );
            self.errors.push(e);
        }
    }

    fn check_dup<'a>(
        &self,
        line: usize,
        what: &str,
        name: &str,
        mut existing: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConfError> {
        if existing.any(|n| n == name) {
            return Err(self.err(line, format!("duplicate {what} name '{name}'")));
        }
        Ok(())
    }

    fn proxy_directive(
        &mut self,
        mask: u8,
        kind: &str,
        d: &Directive,
        p: &mut Draft,
    ) -> Result<(), ConfError> {
        if let Some(r) = self.hap_proxy(mask, kind, d, p) {
            return r;
        }
        if self.ignored_or_unsupported(d)? {
            return Ok(());
        }
        let kw = d.keyword();
        let Some(&(_, allowed)) = PROXY_KEYWORDS.iter().find(|(k, _)| *k == kw) else {
            let known: Vec<&str> = PROXY_KEYWORDS.iter().map(|(k, _)| *k).collect();
            return Err(self.err(
                d.line,
                format!(
                    "unknown keyword '{kw}' in {kind} section{}",
                    did_you_mean(kw, &known)
                ),
            ));
        };
        if allowed & mask == 0 {
            return Err(self.err(d.line, format!("'{kw}' is not allowed in a {kind} section")));
        }
        let a = &d.args;
        let e = |m: String| self.err(d.line, format!("'{kw}': {m}"));
        match kw {
            "bind" => {
                if a.len() < 2 {
                    return Err(e("missing address".into()));
                }
                let addr = parse::bind_addr(&a[1]).map_err(e)?;
                let mut warns = Vec::new();
                let (rest, hap) = self.hap_bind_args(&a[2..], &mut warns).map_err(e)?;
                let (tls, h2) = bind_options(&rest).map_err(e)?;
                let tls = self.hap_bind_tls(tls, &hap, &mut warns).map_err(e)?;
                for w in warns {
                    self.warn(d.line, w);
                }
                p.binds.push(Bind {
                    line: d.line,
                    addr,
                    tls,
                    h2,
                    hap,
                });
            }
            "mode" => {
                p.mode = match one_arg(a).map_err(e)? {
                    "tcp" => Mode::Tcp,
                    "http" => Mode::Http,
                    m => return Err(e(format!("unknown mode '{m}' (expected tcp or http)"))),
                };
                p.mode_unknown = false;
            }
            "default_backend" => {
                p.default_backend = Some((d.line, one_arg(a).map_err(e)?.to_string()));
            }
            "balance" => {
                p.balance = match one_arg(a).map_err(e)? {
                    "roundrobin" => Balance::RoundRobin,
                    "leastconn" => Balance::LeastConn,
                    "source" => Balance::Source,
                    "random" => Balance::Random,
                    b => {
                        return Err(e(format!(
                            "unknown algorithm '{b}'{}",
                            did_you_mean(b, &["roundrobin", "leastconn", "source", "random"])
                        )))
                    }
                }
            }
            "server" => {
                if a.len() < 3 {
                    return Err(e("expected 'server NAME HOST:PORT [options]'".into()));
                }
                let name = a[1].clone();
                if p.servers.iter().any(|s| s.name == name) {
                    return Err(e(format!("duplicate server name '{name}'")));
                }
                let addr = parse::peer_addr(&a[2]).map_err(e)?;
                let host = a[2].rsplit_once(':').map_or(a[2].as_str(), |(h, _)| h);
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let mut opts = p.server_opts.clone();
                let mut warns = Vec::new();
                let rest = self
                    .hap_server_args(&a[3..], &mut opts.hap, &mut warns)
                    .map_err(e)?;
                server_options(&rest, &mut opts).map_err(e)?;
                if let Some(t) = &opts.tls {
                    if t.verify && t.ca.is_empty() {
                        return Err(e(
                            "'verify required' needs 'ca-file PATH' (or say 'verify none')".into(),
                        ));
                    }
                }
                if opts.check_ssl && opts.tls.is_none() {
                    return Err(e("'check-ssl' needs 'ssl'".into()));
                }
                server_proto(&mut opts).map_err(e)?;
                if let Some(a) = opts.hap.agent.as_ref().filter(|a| a.enabled) {
                    if a.port.is_none() {
                        return Err(e("'agent-check' needs 'agent-port N'".into()));
                    }
                }
                if opts.observe > 0 && !opts.check {
                    return Err(e(
                        "'observe' needs 'check' (checks bring the server back up)".into(),
                    ));
                }
                p.servers.push(ServerConf {
                    name,
                    line: d.line,
                    addr,
                    host,
                    opts,
                });
                for w in warns {
                    self.warn(d.line, w);
                }
            }
            "default-server" => {
                let mut hap = p.server_opts.hap.clone();
                let mut warns = Vec::new();
                let rest = self
                    .hap_server_args(&a[1..], &mut hap, &mut warns)
                    .map_err(e)?;
                server_options(&rest, &mut p.server_opts).map_err(e)?;
                p.server_opts.hap = hap;
                for w in warns {
                    self.warn(d.line, w);
                }
            }
            "timeout" if a.get(1).map(String::as_str) == Some("http-body") => {
                if mask & (D | F | L) == 0 {
                    return Err(e(format!(
                        "'timeout http-body' is not allowed in a {kind} section"
                    )));
                }
                let (_, v) = two_args(a).map_err(e)?;
                p.body.timeout = match v {
                    "off" => None,
                    v => match parse::duration(v).map_err(e)? {
                        t if t.is_zero() => {
                            return Err(e(
                                "'timeout http-body' must be more than 0, or 'off'".into()
                            ))
                        }
                        t => Some(t),
                    },
                };
            }
            "http-body-min-rate" => {
                let v = one_arg(a).map_err(e)?;
                p.body.min_rate = parse::size(v).map_err(e)?;
            }
            "timeout" => {
                let (which, v) = two_args(a).map_err(e)?;
                let t = parse::duration(v).map_err(e)?;
                let (slot, allowed) = match which {
                    "connect" => (&mut p.timeout_connect, D | B | L),
                    "client" => (&mut p.timeout_client, D | F | L),
                    "server" => (&mut p.timeout_server, D | B | L),
                    "http-request" => (p.timeout_http_request.insert(t), D | F | L),
                    "http-keep-alive" => (p.timeout_keep_alive.insert(t), D | F | L),
                    "check" => (p.timeout_check.insert(t), D | B | L),
                    "handshake" => (p.timeout_handshake.insert(t), D | F | L),
                    w => {
                        return Err(e(format!(
                            "unknown timeout '{w}'{}",
                            did_you_mean(
                                w,
                                &[
                                    "connect",
                                    "client",
                                    "server",
                                    "http-request",
                                    "http-keep-alive",
                                    "check",
                                    "handshake",
                                    "http-body"
                                ]
                            )
                        )))
                    }
                };
                if allowed & mask == 0 {
                    return Err(e(format!(
                        "'timeout {which}' is not allowed in a {kind} section"
                    )));
                }
                if t.is_zero() {
                    return Err(e(format!(
                        "'timeout {which}' must be more than 0 (lb has no unlimited timeouts)"
                    )));
                }
                *slot = t;
            }
            "maxconn" => {
                let v = one_arg(a).map_err(e)?;
                p.maxconn = Some(parse::number(v, 1, 10_000_000).map_err(e)? as usize);
            }
            "retries" => {
                let v = one_arg(a).map_err(e)?;
                p.retries = parse::number(v, 0, 100).map_err(e)? as u32;
            }
            "option" if a.get(1).map(String::as_str) == Some("httpchk") => {
                if mask == F {
                    return Err(e(
                        "'option httpchk' is not allowed in a frontend section".into()
                    ));
                }
                let (method, uri) = match a.len() {
                    2 => ("OPTIONS", "/"),
                    3 => ("OPTIONS", a[2].as_str()),
                    4 => (a[2].as_str(), a[3].as_str()),
                    _ => return Err(e(format!("unexpected extra argument '{}'", a[4]))),
                };
                if !method.bytes().all(|b| b.is_ascii_uppercase()) || !uri.starts_with('/') {
                    return Err(e(format!(
                        "expected 'option httpchk [METHOD] /URI', got '{method} {uri}'"
                    )));
                }
                p.httpchk = Some(HttpCheck {
                    method: method.to_string(),
                    uri: uri.to_string(),
                    expect_status: None,
                });
                p.grpc_check = None;
            }
            "option" if a.get(1).map(String::as_str) == Some("grpc-check") => {
                if mask == F {
                    return Err(e(
                        "'option grpc-check' is not allowed in a frontend section".into(),
                    ));
                }
                let service = match a.get(2..).unwrap_or(&[]) {
                    [] => String::new(),
                    [s] => s.clone(),
                    [_, x, ..] => return Err(e(format!("unexpected extra argument '{x}'"))),
                };
                // A protobuf string field of at most 127 bytes keeps the
                // request's encoding to one length byte; names are short.
                if service.len() > 127 || !service.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(e(format!(
                        "'option grpc-check {service}': a service name is printable ASCII, at most 127 bytes"
                    )));
                }
                p.grpc_check = Some(GrpcCheck { service });
                p.httpchk = None;
            }
            "option" => {
                let v = one_arg(a).map_err(e)?;
                match v {
                    "allbackups" if mask != F => p.allbackups = true,
                    "forwardfor" => p.forwardfor = true,
                    "redispatch" => p.redispatch = true,
                    // Keep-alive is the default; splicing is automatic in TCP mode.
                    "http-keep-alive" | "splice-auto" | "splice-request" | "splice-response" => {}
                    "httplog" | "tcplog" | "dontlognull" => self.warn(
                        d.line,
                        format!("'option {v}' has no effect in lb yet; ignored"),
                    ),
                    o => {
                        return Err(e(format!(
                            "unknown option '{o}'{}",
                            did_you_mean(o, OPTIONS)
                        )))
                    }
                }
            }
            "http-reuse" => {
                p.reuse = match one_arg(a).map_err(e)? {
                    "never" => Reuse::Never,
                    "safe" => Reuse::Safe,
                    "always" | "aggressive" => Reuse::Always,
                    r => return Err(e(format!("unknown mode '{r}' (never, safe, always)"))),
                }
            }
            "acl" => {
                let acl = acl::parse_acl_in(a, d.line, &self.base()).map_err(e)?;
                p.acls.push(acl);
            }
            "use_backend" => {
                if a.len() < 2 || (a.len() > 2 && !matches!(a[2].as_str(), "if" | "unless")) {
                    return Err(e("expected 'use_backend NAME [if|unless COND]'".into()));
                }
                let cond = if a.len() > 2 {
                    acl::parse_cond_in(&a[2..], &self.base()).map_err(e)?
                } else {
                    // No condition: `unless` nothing, always true.
                    Cond {
                        unless: true,
                        any: Vec::new(),
                        anon: Vec::new(),
                    }
                };
                // As HAProxy: a name with `%[` is a log-format string, resolved
                // per request (an unknown result goes to default_backend).
                let dynamic = if a[1].contains("%[") {
                    Some(super::sample::LogFmt::parse(&a[1], &self.base()).map_err(e)?)
                } else {
                    None
                };
                p.use_backends.push(UseBackend {
                    line: d.line,
                    backend: a[1].clone(),
                    dynamic,
                    cond,
                });
            }
            "http-request" => {
                let rule =
                    super::rules::parse(super::rules::Phase::Request, a, d.line, &self.base())
                        .map_err(e)?;
                if let super::rules::Action::Ignored(why) = rule.action {
                    self.warn(
                        d.line,
                        format!("'http-request {}' has no effect in lb: {why}", a[1]),
                    );
                }
                p.rules.push(rule);
            }
            "tcp-request" => {
                let rule = tcp_rule(a, d.line, &self.base()).map_err(e)?;
                p.tcp_rules.push(rule);
            }
            "limit" => limit(a, &mut p.client_limits).map_err(e)?,
            "http-check" => {
                match a.get(1..).unwrap_or(&[]) {
                    [x, st, code] if x == "expect" && st == "status" => {
                        p.expect_status = Some(parse::number(code, 100, 599).map_err(e)? as u16);
                    }
                    _ => return Err(e(
                        "expected 'http-check expect status CODE' (the only form lb implements)"
                            .into(),
                    )),
                }
            }
            "max-body-size" => {
                let v = one_arg(a).map_err(e)?;
                p.max_body = Some(parse::size(v).map_err(e)?);
            }
            _ => unreachable!("keyword table and match agree"),
        }
        Ok(())
    }

    fn validate(&mut self) {
        self.hap_link_resolvers();
        let mut errors = Vec::new();
        let g = &self.conf.global;
        let failed = |kw| self.failed_global.contains(kw);
        // Without nbthread, against this machine's cores, as a start here would;
        // with one that failed, the count is unknown.
        if !failed("nbthread") {
            if let Err((line, m)) = super::cpumap::for_workers(&g.cpu_map, g.threads()) {
                errors.push(self.err(line, format!("'cpu-map': {m}")));
            }
        }
        if let Some(addr) = g.admin {
            if !addr.ip().is_loopback()
                && g.admin_auth.is_none()
                && !g.admin_insecure
                && !failed("admin-auth")
                && !failed("admin-insecure")
            {
                errors.push(self.err(
                    g.admin_line,
                    format!("'admin': refusing {addr} (not loopback) without 'admin-auth USER:PASSWORD' (or 'admin-insecure')"),
                ));
            }
        }
        let backends: HashMap<&str, &Backend> = self
            .conf
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b))
            .collect();
        for (fe, line, be) in &self.default_backend_refs {
            let Some(b) = backends.get(be.as_str()) else {
                if self.broken.contains(be) {
                    continue;
                }
                let mut names: Vec<&str> = backends.keys().copied().collect();
                names.sort_unstable();
                errors.push(self.err(
                    *line,
                    format!(
                        "frontend '{fe}': backend '{be}' does not exist{}",
                        did_you_mean(be, &names)
                    ),
                ));
                continue;
            };
            // A section with errors, or whose mode is unknown: no mismatch to report.
            if self.broken.contains(fe)
                || self.broken.contains(be)
                || self.mode_unknown_frontends.contains(fe)
                || self.mode_unknown_backends.contains(be)
            {
                continue;
            }
            let f = self.conf.frontends.iter().find(|f| &f.name == fe);
            if let Some(f) = f {
                if f.mode != b.mode {
                    errors.push(
                        self.err(
                            *line,
                            format!(
                                "frontend '{fe}' is mode {:?} but backend '{be}' is mode {:?}",
                                f.mode, b.mode
                            )
                            .to_lowercase(),
                        ),
                    );
                }
            }
        }
        for f in &self.conf.frontends {
            if f.default_backend.is_none() {
                self.conf.warnings.push(ConfError {
                    file: self.file.clone(),
                    line: f.line,
                    msg: format!(
                        "frontend '{}' has no default_backend: its connections will be closed",
                        f.name
                    ),
                });
            }
        }
        // Two listeners on one address (port 0 means "any free port": never a clash).
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        let g = &self.conf.global;
        let binds = g
            .admin
            .map(|a| (g.admin_line, a))
            .into_iter()
            .chain(
                self.conf
                    .frontends
                    .iter()
                    .flat_map(|f| f.binds.iter().map(|b| (b.line, b.addr))),
            )
            .chain(self.conf.kvs.iter().map(|k| (k.line_bind, k.bind)))
            .chain(self.conf.webs.iter().map(|w| (w.line_bind, w.bind)))
            .chain(self.conf.apps.iter().map(|a| (a.line_bind, a.bind)))
            .chain(self.conf.sentinels.iter().map(|s| (s.line_bind, s.bind)));
        let admin = g.admin.filter(|a| a.port() != 0);
        // A virtual address is bound before this node holds it (IP_FREEBIND).
        let vips: HashSet<std::net::IpAddr> = self
            .conf
            .vrrps
            .iter()
            .flat_map(|v| v.addresses.iter().map(|a| a.0.into()))
            .collect();
        for (line, addr) in binds {
            if addr.port() != 0 && !seen.insert(addr) {
                errors.push(self.err(
                    line,
                    format!("address {addr} is already bound by another listener"),
                ));
            } else if let Some(a) = admin.filter(|a| {
                // The admin listener does not share its socket (no SO_REUSEPORT), so
                // a wildcard on its port, or it a wildcard under another's, clashes too.
                *a != addr
                    && a.port() == addr.port()
                    && a.is_ipv4() == addr.is_ipv4()
                    && (a.ip().is_unspecified() || addr.ip().is_unspecified())
            }) {
                errors.push(self.err(
                    line,
                    format!("address {addr} overlaps the admin address {a}"),
                ));
            }
            if let Err(m) = local_ip(addr.ip()).or_else(|m| {
                if vips.contains(&addr.ip()) {
                    Ok(())
                } else {
                    Err(m)
                }
            }) {
                errors.push(self.err(line, m));
            }
        }
        errors.extend(
            vrrp::cross_check(&self.conf, &self.broken)
                .into_iter()
                .map(|(l, m)| self.err(l, m)),
        );
        self.errors.extend(errors);
    }
}

/// An IP address to listen on must be one of this host's: a trial bind on
/// port 0 (any free port, so no clash with a running lb) tells.
fn local_ip(ip: std::net::IpAddr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_loopback() {
        return Ok(());
    }
    match std::net::TcpListener::bind(SocketAddr::new(ip, 0)) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Err(format!("address {ip} is not an address of this host ({e})"))
        }
        _ => Ok(()),
    }
}

/// `bind ADDR` options: `ssl`, `crt PATH` (repeatable), `self-signed NAME...`,
/// `strict-sni`, `alpn LIST`, `no-tls-tickets`, `proto h2`. Returns the TLS
/// settings and whether `proto h2` was given.
fn bind_options(args: &[String]) -> Result<(Option<BindTls>, bool), String> {
    const OPTS: &[&str] = &[
        "ssl",
        "crt",
        "self-signed",
        "strict-sni",
        "alpn",
        "no-tls-tickets",
        "proto",
    ];
    let mut h2 = false;
    let mut ssl = false;
    let mut certs = Vec::new();
    let mut strict_sni = false;
    let mut tickets = true;
    let mut alpn: Option<Vec<Vec<u8>>> = None;
    let mut i = 0;
    while i < args.len() {
        let o = args[i].as_str();
        i += 1;
        match o {
            "ssl" => ssl = true,
            "strict-sni" => strict_sni = true,
            "no-tls-tickets" => tickets = false,
            "proto" => {
                let v = args.get(i).ok_or("'proto' needs a protocol (h2)")?;
                i += 1;
                if v != "h2" {
                    return Err(format!(
                        "'proto {v}': lb speaks 'proto h2' only (HTTP/1 is the default)"
                    ));
                }
                h2 = true;
            }
            "crt" => {
                let p = args.get(i).ok_or("'crt' needs a path")?;
                i += 1;
                certs.extend(tls::load_crt(p)?);
            }
            "alpn" => {
                let v = args.get(i).ok_or("'alpn' needs a list such as http/1.1")?;
                i += 1;
                if v.split(',').any(str::is_empty) {
                    return Err(format!("'alpn {v}': empty protocol name"));
                }
                alpn = Some(v.split(',').map(|p| p.as_bytes().to_vec()).collect());
            }
            "self-signed" => {
                let start = i;
                while i < args.len() && !OPTS.contains(&args[i].as_str()) {
                    i += 1;
                }
                if start == i {
                    return Err("'self-signed' needs at least one name".into());
                }
                certs.push(tls::self_signed(&args[start..i])?);
            }
            x => {
                return Err(format!(
                    "unknown bind option '{x}'{}",
                    did_you_mean(x, OPTS)
                ))
            }
        }
    }
    if !ssl {
        if !certs.is_empty() || strict_sni || alpn.is_some() || !tickets {
            return Err(
                "'crt', 'self-signed', 'strict-sni', 'alpn' and 'no-tls-tickets' need 'ssl'".into(),
            );
        }
        return Ok((None, h2));
    }
    if certs.is_empty() {
        return Err("'ssl' needs 'crt PATH' or 'self-signed NAME...'".into());
    }
    // `proto h2` speaks h2 alone: offer it unless the line says otherwise.
    let default_alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let tls = BindTls {
        certs,
        strict_sni,
        alpn: alpn.unwrap_or_else(|| vec![default_alpn.to_vec()]),
        tickets,
        client_auth: None,
    };
    Ok((Some(tls), h2))
}

/// `tcp-request connection reject [if|unless COND]`.
fn tcp_rule(a: &[String], line: usize, base: &std::path::Path) -> Result<TcpRule, String> {
    let usage = "expected 'tcp-request connection reject [if|unless COND]'";
    match (a.get(1).map(String::as_str), a.get(2).map(String::as_str)) {
        (Some("connection"), Some("reject")) => {}
        (Some("connection"), Some(other)) => {
            return Err(format!(
                "'tcp-request connection {other}' is not implemented (lb has 'reject'); {usage}"
            ))
        }
        _ => return Err(usage.into()),
    }
    let cond = match a.get(3) {
        None => None,
        Some(_) => Some(acl::parse_cond_in(&a[3..], base)?),
    };
    Ok(TcpRule { line, cond })
}

/// `limit conn N`, `limit rate N/s`, `limit http-req-rate N/s`, `limit table-size N`.
fn limit(a: &[String], l: &mut ClientLimits) -> Result<(), String> {
    const KINDS: &[&str] = &["conn", "rate", "http-req-rate", "table-size"];
    let (kind, v) = two_args(a)?;
    let per_second = |v: &str| -> Result<u32, String> {
        let n = v
            .strip_suffix("/s")
            .ok_or_else(|| format!("expected a rate like '100/s', got '{v}'"))?;
        Ok(parse::number(n, 1, 10_000_000)? as u32)
    };
    match kind {
        "conn" => l.conn = Some(parse::number(v, 1, 10_000_000)? as u32),
        "rate" => l.rate = Some(per_second(v)?),
        "http-req-rate" => l.http_req_rate = Some(per_second(v)?),
        "table-size" => l.table_size = parse::number(v, 64, 100_000_000)? as usize,
        k => return Err(format!("unknown limit '{k}'{}", did_you_mean(k, KINDS))),
    }
    Ok(())
}

/// The keyword a failed line was meant to have: its own if known, else the one
/// its misspelling suggests (as the error message does).
fn meant(kw: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .find(|k| **k == kw)
        .copied()
        .or_else(|| parse::suggest(kw, known))
}

/// `meant` among frontend/backend/listen/defaults keywords.
fn meant_proxy(kw: &str) -> Option<&'static str> {
    let known: Vec<&'static str> = PROXY_KEYWORDS.iter().map(|(k, _)| *k).collect();
    meant(kw, &known)
}

fn one_arg(a: &[String]) -> Result<&str, String> {
    match a.len() {
        1 => Err("missing argument".into()),
        2 => Ok(&a[1]),
        _ => Err(format!("unexpected extra argument '{}'", a[2])),
    }
}

fn two_args(a: &[String]) -> Result<(&str, &str), String> {
    match a.len() {
        0..=2 => Err("missing argument".into()),
        3 => Ok((&a[1], &a[2])),
        _ => Err(format!("unexpected extra argument '{}'", a[3])),
    }
}

const SERVER_OPTIONS: &[&str] = &[
    "ssl",
    "verify",
    "ca-file",
    "sni",
    "check-ssl",
    "check",
    "inter",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "observe",
    "weight",
    "backup",
    "disabled",
    "enabled",
    "pool-max-conn",
    "pool-purge-delay",
    "proto",
    "alpn",
];

/// ALPN protocols lb speaks to servers in mode http.
const SERVER_HTTP_ALPN: &[&str] = &["h2", "http/1.1", "http/1.0"];

/// `proto` and `alpn` agree: `proto h2` over `ssl` offers `alpn h2` unless
/// told otherwise, and one ALPN list names one HTTP version (lb does not
/// fall back from h2 to HTTP/1.1 per connection).
fn server_proto(o: &mut ServerOpts) -> Result<(), String> {
    let Some(t) = o.tls.as_mut() else {
        return Ok(());
    };
    if t.alpn.is_empty() {
        t.alpn = vec![match o.proto {
            ServerProto::H2 => b"h2".to_vec(),
            ServerProto::H1 => b"http/1.1".to_vec(),
        }];
    }
    let names: Vec<String> = t
        .alpn
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if t.h2() && names.len() > 1 {
        return Err(format!(
            "'alpn {}': lb speaks one HTTP version per server: say 'alpn h2' (HTTP/2) or 'alpn http/1.1'",
            names.join(",")
        ));
    }
    if o.proto == ServerProto::H2 && !t.h2() {
        return Err(format!(
            "'proto h2' with 'alpn {}': an HTTP/2 server over TLS needs 'alpn h2'",
            names.join(",")
        ));
    }
    Ok(())
}

fn server_options(args: &[String], o: &mut ServerOpts) -> Result<(), String> {
    let mut it = args.iter();
    while let Some(opt) = it.next() {
        match opt.as_str() {
            "weight" => {
                let v = it.next().ok_or("'weight' needs a value")?;
                o.weight = parse::number(v, 0, 256)? as u32;
            }
            "backup" => o.backup = true,
            "disabled" => o.disabled = true,
            "enabled" => o.disabled = false,
            "check" => o.check = true,
            "no-check" => o.check = false,
            "check-ssl" => o.check_ssl = true,
            "ssl" => {
                o.tls.get_or_insert_with(ServerTls::default);
            }
            "verify" | "ca-file" | "sni" => {
                let v = it.next().ok_or(format!("'{opt}' needs a value"))?;
                let t = o.tls.get_or_insert_with(ServerTls::default);
                match opt.as_str() {
                    "verify" => {
                        t.verify = match v.as_str() {
                            "none" => false,
                            "required" => true,
                            x => {
                                return Err(format!("unknown verify mode '{x}' (none or required)"))
                            }
                        }
                    }
                    "ca-file" => t.ca = tls::load_ca(v)?,
                    _ => (t.sni, t.sni_from_request) = tls::parse_sni(v)?,
                }
            }
            "inter" | "fastinter" | "downinter" => {
                let v = it.next().ok_or(format!("'{opt}' needs a value"))?;
                let d = parse::duration(v)?;
                if d < std::time::Duration::from_millis(10) {
                    return Err(format!("'{opt}' must be at least 10ms"));
                }
                match opt.as_str() {
                    "inter" => o.inter = d,
                    "fastinter" => o.fastinter = Some(d),
                    _ => o.downinter = Some(d),
                }
            }
            "rise" | "fall" => {
                let v = it.next().ok_or(format!("'{opt}' needs a value"))?;
                let n = parse::number(v, 1, 1000)? as u32;
                if opt == "rise" {
                    o.rise = n
                } else {
                    o.fall = n
                }
            }
            "observe" => {
                let v = it
                    .next()
                    .ok_or("'observe' needs a value (layer4 or layer7)")?;
                o.observe = match v.as_str() {
                    "layer4" => 4,
                    "layer7" => 7,
                    x => return Err(format!("unknown observe mode '{x}' (layer4 or layer7)")),
                };
            }
            "pool-max-conn" => {
                let v = it.next().ok_or("'pool-max-conn' needs a value")?;
                o.pool_max_conn = parse::number(v, 0, 100_000)? as usize;
            }
            "pool-purge-delay" => {
                let v = it.next().ok_or("'pool-purge-delay' needs a value")?;
                o.pool_purge_delay = parse::duration(v)?;
            }
            "proto" => {
                let v = it.next().ok_or("'proto' needs a value (h2 or h1)")?;
                o.proto = match v.as_str() {
                    "h2" => ServerProto::H2,
                    "h1" => ServerProto::H1,
                    x => return Err(format!("unknown server proto '{x}' (h2 or h1)")),
                };
            }
            "alpn" => {
                let v = it.next().ok_or("'alpn' needs a list such as h2")?;
                if v.split(',').any(str::is_empty) {
                    return Err(format!("'alpn {v}': empty protocol name"));
                }
                let t = o.tls.get_or_insert_with(ServerTls::default);
                t.alpn = v.split(',').map(|p| p.as_bytes().to_vec()).collect();
            }
            other => {
                return Err(format!(
                    "unknown server option '{other}'{}",
                    did_you_mean(other, SERVER_OPTIONS)
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Conf {
        parse_conf("t.conf", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(text: &str) -> String {
        parse_conf("t.conf", text).unwrap_err().to_string()
    }

    /// The lines of the errors of a conf that has some.
    fn lines(text: &str) -> Vec<usize> {
        parse_conf("t.conf", text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.line)
            .collect()
    }

    const BASE: &str = "frontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s1 127.0.0.1:1\n";

    #[test]
    fn minimal_tcp_conf() {
        let c = ok(BASE);
        assert_eq!(c.frontends[0].mode, Mode::Tcp);
        assert_eq!(c.frontends[0].default_backend.as_deref(), Some("b"));
        assert_eq!(c.backends[0].servers[0].opts.weight, 1);
        assert_eq!(c.backends[0].retries, DEFAULT_RETRIES);
    }

    #[test]
    fn defaults_apply_to_following_sections_only() {
        let c = ok("backend a\n    server s 127.0.0.1:1\ndefaults\n    retries 7\n    timeout connect 1s\n    default-server weight 3\nbackend b\n    server s 127.0.0.1:1\ndefaults\nbackend c\n    server s 127.0.0.1:1\n");
        assert_eq!(c.backends[0].retries, DEFAULT_RETRIES);
        assert_eq!(c.backends[1].retries, 7);
        assert_eq!(c.backends[1].timeout_connect, Duration::from_secs(1));
        assert_eq!(c.backends[1].servers[0].opts.weight, 3);
        // A new defaults section resets everything to built-in values.
        assert_eq!(c.backends[2].retries, DEFAULT_RETRIES);
    }

    #[test]
    fn listen_is_frontend_and_backend() {
        let c = ok("listen l\n    mode tcp\n    bind 127.0.0.1:0\n    server s 127.0.0.1:1 weight 2 backup\n");
        assert_eq!(c.frontends[0].default_backend.as_deref(), Some("l"));
        assert!(c.backends[0].servers[0].opts.backup);
    }

    #[test]
    fn admin_and_access_log_settings() {
        let c = ok(&format!(
            "global\n    admin 127.0.0.1:0\n    access-log stdout\n    log-format json\n{BASE}"
        ));
        assert_eq!(c.global.admin, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.global.access_log, Some(LogSink::Stdout));
        assert_eq!(c.global.log_format, LogFormat::Json);
        let c = ok(&format!("global\n    admin 0.0.0.0:9000\n    admin-auth u:p\n    access-log /tmp/x.log\n    log-format \"%ci %ST\"\n{BASE}"));
        assert_eq!(c.global.admin_auth.as_deref(), Some("u:p"));
        assert_eq!(
            c.global.access_log,
            Some(LogSink::File("/tmp/x.log".into()))
        );
        assert_eq!(c.global.log_format, LogFormat::Custom("%ci %ST".into()));
        let c = ok(&format!(
            "global\n    admin-insecure\n    admin 0.0.0.0:9001\n{BASE}"
        ));
        assert!(c.global.admin_insecure);
        assert_eq!(ok(BASE).global.admin, None);
        assert_eq!(ok(BASE).global.log_format, LogFormat::Default);
    }

    #[test]
    fn admin_and_access_log_errors() {
        assert_eq!(
            bad(&format!("global\n    nbthread 1\n    admin 0.0.0.0:9000\n{BASE}")),
            "t.conf:3: 'admin': refusing 0.0.0.0:9000 (not loopback) without 'admin-auth USER:PASSWORD' (or 'admin-insecure')"
        );
        assert!(bad("global\n    admin\n").contains("'admin': missing argument"));
        assert!(bad("global\n    admin nowhere\n").contains("invalid address 'nowhere'"));
        assert!(bad("global\n    admin-auth user\n").contains("expected USER:PASSWORD"));
        assert!(bad("global\n    admin-auth :p\n").contains("expected USER:PASSWORD"));
        assert!(bad("global\n    admin-insecure yes\n").contains("unexpected extra argument 'yes'"));
        assert!(bad("global\n    access-log\n").contains("'access-log': missing argument"));
        assert!(bad("global\n    access-log a b\n").contains("unexpected extra argument 'b'"));
        assert!(
            bad("global\n    log-format \"%zz\"\n").contains("unknown log-format variable '%zz'")
        );
        assert!(bad("global\n    admn 127.0.0.1:1\n").contains("did you mean 'admin'"));
    }

    #[test]
    fn global_settings() {
        let c = ok("global\n    nbthread 3\n    maxconn 50\n    timeout drain 2s\n    daemon\n");
        assert_eq!(c.global.nbthread, Some(3));
        assert_eq!(c.global.maxconn, 50);
        assert_eq!(c.global.timeout_drain, Duration::from_secs(2));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].to_string().starts_with("t.conf:5: 'daemon'"));
    }

    #[test]
    fn frontend_maxconn_defaults_to_global() {
        let c = ok(&format!("global\n    maxconn 77\n{BASE}"));
        assert_eq!(c.frontends[0].maxconn, 77);
    }

    #[test]
    fn haproxy_only_keywords_warn() {
        let c = ok(&format!("global\n    log stdout local0\n    chroot /x\n    user u\n    group g\n    pidfile /p\n{BASE}"));
        assert_eq!(c.warnings.len(), 5);
    }

    #[test]
    fn unknown_section() {
        assert_eq!(
            bad("frontnd x\n"),
            "t.conf:1: unknown section 'frontnd' (did you mean 'frontend'?)"
        );
    }

    #[test]
    fn unknown_keyword_suggests() {
        assert_eq!(
            bad("frontend f\n    bnd 127.0.0.1:0\n"),
            "t.conf:2: unknown keyword 'bnd' in frontend section (did you mean 'bind'?)"
        );
        assert_eq!(
            bad("global\n    nbthreads 2\n"),
            "t.conf:2: unknown keyword 'nbthreads' in global section (did you mean 'nbthread'?)"
        );
    }

    #[test]
    fn unsupported_haproxy_keyword() {
        assert!(bad("backend b\n    tcp-response content accept\n").contains("does not implement"));
        // Known but not implemented: an error that says so.
        assert!(bad("backend b\n    stick-table type ip\n").contains("needs 'size N'"));
    }

    #[test]
    fn keyword_in_wrong_section() {
        assert_eq!(
            bad("frontend f\n    server s 127.0.0.1:1\n"),
            "t.conf:2: 'server' is not allowed in a frontend section"
        );
        assert_eq!(
            bad("backend b\n    timeout client 1s\n"),
            "t.conf:2: 'timeout': 'timeout client' is not allowed in a backend section"
        );
    }

    #[test]
    fn missing_and_extra_arguments() {
        assert_eq!(
            bad("frontend f\n    bind\n"),
            "t.conf:2: 'bind': missing address"
        );
        assert_eq!(
            bad("backend b\n    retries\n"),
            "t.conf:2: 'retries': missing argument"
        );
        assert_eq!(
            bad("backend b\n    retries 1 2\n"),
            "t.conf:2: 'retries': unexpected extra argument '2'"
        );
        assert_eq!(
            bad("backend b\n    server s\n"),
            "t.conf:2: 'server': expected 'server NAME HOST:PORT [options]'"
        );
        assert_eq!(bad("frontend\n"), "t.conf:1: 'frontend' needs a name");
        assert_eq!(
            bad("frontend a b\n"),
            "t.conf:1: 'frontend' takes one name, got extra 'b'"
        );
        assert_eq!(bad("global x\n"), "t.conf:1: 'global' takes no name");
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 weight\n").contains("'weight' needs a value")
        );
    }

    #[test]
    fn bad_values() {
        assert!(
            bad("frontend f\n    bind 1.2.3.4\n").starts_with("t.conf:2: 'bind': invalid address")
        );
        assert!(bad("frontend f\n    bind 1.2.3.4:80 foo\n").contains("unknown bind option 'foo'"));
        assert!(bad("backend b\n    server s nohost\n")
            .starts_with("t.conf:2: 'server': invalid address"));
        assert!(bad("backend b\n    timeout connect 5x\n").contains("invalid duration '5x'"));
        assert!(bad("backend b\n    timeout conect 5s\n").contains("did you mean 'connect'"));
        assert!(bad("backend b\n    mode udp\n").contains("unknown mode 'udp'"));
        assert!(bad("backend b\n    balance roundrobn\n").contains("did you mean 'roundrobin'"));
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 wieght 2\n").contains("did you mean 'weight'")
        );
        assert!(bad("backend b\n    server s 127.0.0.1:1 weight 999\n")
            .contains("invalid number '999'"));
        assert!(bad("global\n    nbthread 0\n").contains("invalid number '0'"));
        assert!(bad("global\n    timeout client 1s\n").contains("only 'drain'"));
    }

    #[test]
    fn default_backend_must_exist() {
        assert_eq!(
            bad("frontend f\n    bind 127.0.0.1:0\n    default_backend bb\nbackend b\n"),
            "t.conf:3: frontend 'f': backend 'bb' does not exist (did you mean 'b'?)"
        );
    }

    #[test]
    fn mode_mismatch() {
        assert!(bad("frontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    mode tcp\n").contains("mode http but backend 'b' is mode tcp"));
    }

    #[test]
    fn duplicate_names() {
        assert_eq!(
            bad(&format!("{BASE}backend b\n")),
            "t.conf:6: duplicate backend name 'b'"
        );
        assert!(bad("listen l\n    bind 127.0.0.1:0\nbackend l\n")
            .contains("duplicate backend name 'l'"));
        assert!(
            bad("backend b\n    server s 127.0.0.1:1\n    server s 127.0.0.1:2\n")
                .contains("duplicate server name 's'")
        );
        assert!(
            bad("kv a\n    bind 127.0.0.1:0\nkv a\n    bind 127.0.0.1:0\n")
                .contains("duplicate kv name 'a'")
        );
    }

    #[test]
    fn two_listeners_on_one_address() {
        let e = bad("frontend a\n    bind 127.0.0.1:8000\nfrontend b\n    bind 127.0.0.1:8000\n");
        assert_eq!(
            e,
            "t.conf:4: address 127.0.0.1:8000 is already bound by another listener"
        );
        // Port 0 asks for any free port: never a clash.
        ok("frontend a\n    bind 127.0.0.1:0\nfrontend b\n    bind 127.0.0.1:0\n");
        assert_eq!(
            bad("global\n    admin 127.0.0.1:8000\nkv k\n    bind 127.0.0.1:8000\n"),
            "t.conf:4: address 127.0.0.1:8000 is already bound by another listener"
        );
        // The admin listener shares no socket: a wildcard on its port clashes too.
        assert_eq!(
            bad("global\n    admin 127.0.0.1:8000\nkv k\n    bind 0.0.0.0:8000\n"),
            "t.conf:4: address 0.0.0.0:8000 overlaps the admin address 127.0.0.1:8000"
        );
    }

    #[test]
    fn frontend_needs_bind() {
        assert_eq!(
            bad("frontend f\n    mode tcp\n"),
            "t.conf:1: frontend 'f' has no 'bind' line"
        );
    }

    #[test]
    fn listen_rejects_default_backend() {
        assert!(
            bad("listen l\n    bind 127.0.0.1:0\n    default_backend x\n")
                .contains("not allowed in a listen")
        );
    }

    #[test]
    fn http_settings() {
        let c = ok("global\n    tune.bufsize 8k\n    tune.http.maxhdr 50\ndefaults\n    mode http\n    timeout client 5s\n    option forwardfor\nfrontend f\n    bind 127.0.0.1:0\n    timeout http-request 3s\n    max-body-size 1m\n    acl api path_beg /api/\n    use_backend api if api\n    default_backend b\nbackend b\n    http-reuse never\n    option redispatch\n    server s 127.0.0.1:1 pool-max-conn 3 pool-purge-delay 1s\nbackend api\n    server s 127.0.0.1:2\n");
        assert_eq!(c.global.max_head_bytes, 8192);
        assert_eq!(c.global.max_headers, 50);
        let h = &c.frontends[0].http;
        assert_eq!(h.timeout_request, Duration::from_secs(3));
        assert_eq!(h.timeout_keep_alive, Duration::from_secs(3));
        assert!(h.forwardfor);
        assert_eq!(h.max_body, Some(1 << 20));
        assert_eq!(h.use_backends[0].backend, "api");
        assert_eq!(c.backends[0].reuse, Reuse::Never);
        assert!(c.backends[0].redispatch);
        assert_eq!(c.backends[0].servers[0].opts.pool_max_conn, 3);
        assert_eq!(c.backends[1].reuse, Reuse::Safe);
        // http-request defaults to min(10s, timeout client).
        let c = ok("defaults\n    timeout client 5s\nfrontend f\n    bind 127.0.0.1:0\n");
        assert_eq!(c.frontends[0].http.timeout_request, Duration::from_secs(5));
    }

    #[test]
    fn http_errors() {
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    use_backend x if nope\n")
                .contains("acl 'nope' is not defined")
        );
        assert!(bad(
            "frontend f\n    bind 127.0.0.1:0\n    acl a path /\n    use_backend x if a\n"
        )
        .contains("backend 'x' does not exist"));
        assert!(bad("frontend f\n    use_backend x y\n")
            .contains("expected 'use_backend NAME [if|unless COND]'"));
        assert!(bad("backend b\n    option fwdfor\n").contains("unknown option 'fwdfor'"));
        assert!(
            bad("backend b\n    option forwardfor\n    http-reuse sometimes\n")
                .contains("unknown mode 'sometimes'")
        );
        assert!(bad("global\n    tune.bufsize 10\n").contains("out of range"));
        assert!(
            bad("frontend f\n    timeout http-requst 1s\n").contains("did you mean 'http-request'")
        );
    }

    #[test]
    fn pool_and_check_settings() {
        let c = ok("defaults\n    balance leastconn\n    timeout check 500ms\nbackend b\n    option httpchk GET /healthz\n    http-check expect status 204\n    option allbackups\n    default-server check inter 1s fastinter 100ms rise 3 fall 4\n    server a 127.0.0.1:1 observe layer7\n    server c 127.0.0.1:2 no-check downinter 5s\nbackend s\n    balance source\n    option httpchk /ping\nbackend r\n    balance random\n    option httpchk\n");
        let b = &c.backends[0];
        assert_eq!(b.balance, Balance::LeastConn);
        assert!(b.allbackups);
        assert_eq!(b.timeout_check, Some(Duration::from_millis(500)));
        let h = b.httpchk.as_ref().unwrap();
        assert_eq!(
            (h.method.as_str(), h.uri.as_str(), h.expect_status),
            ("GET", "/healthz", Some(204))
        );
        let a = &b.servers[0].opts;
        assert!(a.check);
        assert_eq!(a.inter, Duration::from_secs(1));
        assert_eq!(a.fastinter, Some(Duration::from_millis(100)));
        assert_eq!((a.rise, a.fall, a.observe), (3, 4, 7));
        assert!(!b.servers[1].opts.check);
        assert_eq!(b.servers[1].opts.downinter, Some(Duration::from_secs(5)));
        assert_eq!(c.backends[1].balance, Balance::Source);
        assert_eq!(c.backends[1].httpchk.as_ref().unwrap().method, "OPTIONS");
        assert_eq!(c.backends[2].httpchk.as_ref().unwrap().uri, "/");
        // HAProxy's defaults.
        let c = ok("backend b\n    server a 127.0.0.1:1 check\n");
        let o = &c.backends[0].servers[0].opts;
        assert_eq!((o.inter, o.rise, o.fall), (Duration::from_secs(2), 2, 3));
    }

    #[test]
    fn pool_and_check_errors() {
        assert!(bad("backend b\n    balance leastcon\n").contains("did you mean 'leastconn'"));
        assert!(bad("backend b\n    server a 127.0.0.1:1 observe layer4\n")
            .contains("'observe' needs 'check'"));
        assert!(
            bad("backend b\n    server a 127.0.0.1:1 check observe layer9\n")
                .contains("unknown observe mode")
        );
        assert!(
            bad("backend b\n    server a 127.0.0.1:1 check inter 1ms\n").contains("at least 10ms")
        );
        assert!(bad("backend b\n    server a 127.0.0.1:1 check rise 0\n")
            .contains("invalid number '0'"));
        assert!(bad("backend b\n    http-check expect string ok\n")
            .contains("http-check expect status CODE"));
        assert!(bad("backend b\n    http-check expect status 99\n").contains("invalid number '99'"));
        assert!(
            bad("backend b\n    option httpchk get healthz\n").contains("expected 'option httpchk")
        );
        assert!(bad("frontend f\n    option allbackups\n").contains("unknown option 'allbackups'"));
    }

    #[test]
    fn tls_settings() {
        let c = ok("frontend f\n    mode http\n    bind 127.0.0.1:0 ssl self-signed www.foobar.com localhost strict-sni alpn http/1.1,http/1.0\n    bind 127.0.0.1:0\n    timeout handshake 3s\n    http-request redirect scheme https code 308 unless ssl_fc\n    default_backend b\nbackend b\n    mode http\n    server s localhost:443 ssl verify none sni api.example.com check check-ssl\n");
        let t = c.frontends[0].binds[0].tls.as_ref().unwrap();
        assert_eq!(t.certs[0].names, ["www.foobar.com", "localhost"]);
        assert!(t.strict_sni);
        assert_eq!(t.alpn, [b"http/1.1".to_vec(), b"http/1.0".to_vec()]);
        assert!(t.tickets);
        assert_eq!(c.global.ssl_cache_size, DEFAULT_SSL_CACHE_SIZE);
        assert!(c.frontends[0].binds[1].tls.is_none());
        let c2 = ok("global\n    tune.ssl.cachesize 0\nfrontend f\n    bind :0 ssl self-signed a no-tls-tickets\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n");
        assert_eq!(c2.global.ssl_cache_size, 0);
        assert!(!c2.frontends[0].binds[0].tls.as_ref().unwrap().tickets);
        assert!(bad("global\n    tune.ssl.cachesize lots\n").contains("lots"));
        assert!(bad("frontend f\n    bind :0 no-tls-tickets\n").contains("need 'ssl'"));
        assert_eq!(
            c.frontends[0].http.timeout_handshake,
            Duration::from_secs(3)
        );
        assert!(matches!(
            c.frontends[0].http.rules[0].action,
            super::super::rules::Action::Redirect { code: 308, .. }
        ));
        let s = &c.backends[0].servers[0];
        assert_eq!(s.host, "localhost");
        let st = s.opts.tls.as_ref().unwrap();
        assert!(!st.verify);
        assert_eq!(st.sni.as_deref(), Some("api.example.com"));
        assert!(s.opts.check_ssl);
    }

    #[test]
    fn tls_errors() {
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0 crt /x.pem\n").contains("'crt' needs a path")
                || bad("frontend f\n    bind 127.0.0.1:0 crt /x.pem\n").contains("cannot read crt")
        );
        assert!(bad("frontend f\n    bind 127.0.0.1:0 strict-sni\n").contains("need 'ssl'"));
        assert!(bad("frontend f\n    bind 127.0.0.1:0 ssl\n").contains("'ssl' needs 'crt PATH'"));
        assert!(bad("frontend f\n    bind 127.0.0.1:0 ssl self-signed\n")
            .contains("needs at least one name"));
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0 ssl crt /nonexistent.pem\n")
                .starts_with("t.conf:2: 'bind': cannot read crt")
        );
        assert!(bad("frontend f\n    bind 127.0.0.1:0 sssl\n").contains("did you mean 'ssl'"));
        assert!(bad("backend b\n    server s 127.0.0.1:1 ssl\n")
            .contains("'verify required' needs 'ca-file PATH'"));
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 ssl verify maybe\n")
                .contains("unknown verify mode")
        );
        assert!(bad("backend b\n    server s 127.0.0.1:1 check-ssl\n")
            .contains("'check-ssl' needs 'ssl'"));
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 ssl ca-file /nonexistent\n")
                .contains("cannot read ca-file")
        );
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    http-request redirect scheme ftp\n")
                .contains("unknown scheme 'ftp'")
        );
        assert!(bad(
            "frontend f\n    bind 127.0.0.1:0\n    http-request redirect scheme https code 200\n"
        )
        .contains("invalid redirect code"));
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    http-request tarpit\n")
                .contains("not implemented")
        );
        assert!(bad(
            "frontend f\n    bind 127.0.0.1:0\n    http-request redirect scheme https if ssl_cf\n"
        )
        .contains("did you mean 'ssl_fc'"));
    }

    #[test]
    fn edge_keywords() {
        let c = ok("defaults\n    mode http\n    limit conn 5\nfrontend f\n    bind 127.0.0.1:0\n    limit rate 10/s\n    limit http-req-rate 20/s\n    limit table-size 1000\n    http-request deny deny_status 429 if { src ::1 }\n    tcp-request connection reject\n");
        let f = &c.frontends[0];
        assert_eq!(
            f.client_limits,
            ClientLimits {
                conn: Some(5),
                rate: Some(10),
                http_req_rate: Some(20),
                table_size: 1000
            }
        );
        assert!(matches!(
            f.http.rules[0].action,
            super::super::rules::Action::Deny { status: 429 }
        ));
        assert_eq!(
            f.tcp_rules,
            [TcpRule {
                line: 10,
                cond: None
            }]
        );
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    http-request deny deny_status 302\n")
                .contains("t.conf:3: 'http-request': invalid status '302' (400..599)")
        );
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    tcp-request content reject\n")
                .contains("expected 'tcp-request connection reject")
        );
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    tcp-request connection accept\n")
                .contains("not implemented")
        );
        assert!(bad(
            "frontend f\n    bind 127.0.0.1:0\n    tcp-request connection reject if ssl_fc\n"
        )
        .contains("not known before the handshake"));
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    limit table-size 10\n")
                .contains("invalid number '10'")
        );
        assert!(bad("backend b\n    limit conn 1\n").contains("not allowed in a backend"));
        assert!(
            bad("frontend f\n    bind 127.0.0.1:0\n    acl a src -f /nonexistent/x.lst\n")
                .contains("t.conf:3: 'acl': cannot read '/nonexistent/x.lst'")
        );
    }

    #[test]
    fn every_error_once_without_follow_on_errors() {
        // A backend whose section failed is not also unknown where it is used.
        assert_eq!(
            lines("frontend f\n    bind :0\n    default_backend b\n    use_backend c if { path / }\nbackend b\n    server s nohost\nbackend c x\n"),
            [6, 7]
        );
        // A failed bind (or a bad quote) is not also a missing bind.
        assert_eq!(lines("frontend f\n    bind nowhere\n"), [2]);
        assert_eq!(lines("frontend f\n    bind \"127.0.0.1:0\n"), [2]);
        assert_eq!(lines("kv k\n    bnd 127.0.0.1:0\n"), [2]);
        // A failed acl is not also undefined; a failed mode not also a mismatch.
        assert_eq!(
            lines("frontend f\n    mode htp\n    bind :0\n    acl a pth /\n    use_backend b if a\n    default_backend b\nbackend b\n    mode http\n"),
            [2, 4]
        );
        // Errors of several sections, in line order.
        assert_eq!(
            lines("global\n    nbthread x\nfrontend f\n    bind :0\n    default_backend nope\ndefaults\n    retries y\n"),
            [2, 5, 7]
        );
    }

    #[test]
    fn a_bad_header_keeps_its_lines() {
        // Its server lines are not the frontend's; 'b' is not also unknown; the
        // frontend, lexed well, still reports its own missing bind.
        assert_eq!(
            bad("frontend f\n    default_backend b\nbackend \"b\n    server s 127.0.0.1:1\n"),
            "t.conf:1: frontend 'f' has no 'bind' line\nt.conf:3: unterminated double quote"
        );
    }

    #[test]
    fn a_failed_setting_is_unknown_not_its_default() {
        // A failed mode in defaults: the frontend's mode is unknown, not tcp.
        assert_eq!(
            lines("defaults\n    mode htp\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    mode http\n    server s 127.0.0.1:1\n"),
            [2]
        );
        // ... until a section says its mode.
        assert_eq!(
            lines("defaults\n    mode htp\nfrontend f\n    mode tcp\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    mode http\n"),
            [2, 6]
        );
        // Nor after a defaults whose header failed to lex (its mode line is lost).
        assert_eq!(
            lines("defaults \"d\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    mode http\n"),
            [1]
        );
        // Mode-dependent options of a section whose mode failed (or was misspelt).
        assert_eq!(
            lines("backend b\n    mode htp\n    server s 127.0.0.1:1 ssl verify none sni req.hdr(host)\n"),
            [2]
        );
        assert_eq!(
            lines(
                "frontend f\n    mdoe http\n    bind 127.0.0.1:0\n    limit http-req-rate 10/s\n"
            ),
            [2]
        );
        // A failed nbthread is not the core count; a failed admin-auth is not none.
        assert_eq!(
            lines("global\n    nbthread 1000x\n    cpu-map 1/1000 0\n"),
            [2]
        );
        assert_eq!(
            lines("global\n    admin-auth user\n    admin 0.0.0.0:9000\n"),
            [2]
        );
    }

    #[test]
    fn checks_that_need_no_complete_section_still_run() {
        // A duplicate name, whichever of the two sections failed.
        assert_eq!(
            lines("kv k\n    bind 127.0.0.1:0\nkv k\n    bind 127.0.0.1:0\n    hz x\n"),
            [3, 5]
        );
        assert_eq!(
            lines("app a\n    bind 127.0.0.1:0\n    kv-pool x\napp a\n    bind 127.0.0.1:0\n    kv-primary 127.0.0.1:1\n"),
            [3, 4]
        );
        // A root that is not there, next to another error.
        assert_eq!(
            lines("web w\n    bind 127.0.0.1:0\n    root /nonexistent/www\n    index a/b\n"),
            [3, 4]
        );
    }

    #[test]
    fn only_a_failed_acl_line_hides_the_acl_it_names() {
        assert_eq!(
            lines("frontend f\n    mode http\n    bind 127.0.0.1:0\n    use_backend a if { pth / }\n    http-request deny if a\n"),
            [4, 5]
        );
        assert_eq!(
            lines("frontend f\n    mode http\n    bind 127.0.0.1:0\n    acll a path /\n    http-request deny if a\n"),
            [4]
        );
    }

    #[test]
    fn alpn_names_only_what_mode_http_speaks() {
        let c = ok("frontend f\n    mode http\n    bind :0 ssl self-signed a alpn h2,http/1.1\n");
        let b = &c.frontends[0].binds[0];
        let t = b.tls.as_ref().unwrap();
        assert_eq!(t.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(
            !b.h2,
            "ALPN chooses per connection; proto h2 is not implied"
        );
        let e =
            bad("defaults\n    mode http\nfrontend f\n    bind :0 ssl self-signed a alpn spdy/3\n");
        assert_eq!(e, "t.conf:4: 'bind': alpn 'spdy/3': lb does not speak 'spdy/3' (mode http speaks h2, http/1.1, http/1.0)");
        assert!(bad("frontend f\n    bind :0 ssl self-signed a alpn h2,\n")
            .contains("empty protocol name"));
        // In mode tcp the protocol is the server's business.
        ok("frontend f\n    mode tcp\n    bind :0 ssl self-signed a alpn h2,http/1.1\n");
    }

    #[test]
    fn server_proto_h2_and_alpn() {
        let c = ok("defaults\n    mode http\nbackend b\n    server c 127.0.0.1:1 proto h2\n    server t 127.0.0.1:2 ssl verify none alpn h2\n    server p 127.0.0.1:3 ssl verify none proto h2\nbackend h\n    server h 127.0.0.1:4 ssl verify none\n    server o 127.0.0.1:5 proto h1\n");
        let s: Vec<_> = c.backends.iter().flat_map(|b| b.servers.clone()).collect();
        assert_eq!(s[0].opts.proto, ServerProto::H2);
        assert!(s[0].opts.tls.is_none() && s[0].opts.h2());
        assert_eq!(s[1].opts.tls.as_ref().unwrap().alpn, [b"h2".to_vec()]);
        assert!(s[1].opts.h2());
        // proto h2 over ssl offers h2 by ALPN.
        assert_eq!(s[2].opts.tls.as_ref().unwrap().alpn, [b"h2".to_vec()]);
        assert_eq!(s[3].opts.tls.as_ref().unwrap().alpn, [b"http/1.1".to_vec()]);
        assert!(!s[3].opts.h2() && !s[4].opts.h2());
        // default-server carries it.
        let c =
            ok("backend b\n    mode http\n    default-server proto h2\n    server a 127.0.0.1:1\n");
        assert!(c.backends[0].servers[0].opts.h2());

        assert_eq!(
            bad("backend b\n    mode http\n    server s 127.0.0.1:1 proto h3\n"),
            "t.conf:3: 'server': unknown server proto 'h3' (h2 or h1)"
        );
        assert!(
            bad("backend b\n    mode http\n    server s 127.0.0.1:1 proto\n")
                .contains("'proto' needs a value")
        );
        assert_eq!(
            bad("backend b\n    mode tcp\n    server s 127.0.0.1:1 proto h2\n"),
            "t.conf:3: 'server': 'proto h2' needs mode http (in mode tcp lb passes the bytes as they are)"
        );
        assert!(bad(
            "backend b\n    mode http\n    server s 127.0.0.1:1 ssl verify none alpn h2,http/1.1\n"
        )
        .starts_with(
            "t.conf:3: 'server': 'alpn h2,http/1.1': lb speaks one HTTP version per server"
        ));
        assert!(bad("backend b\n    mode http\n    server s 127.0.0.1:1 ssl verify none alpn http/1.1 proto h2\n")
            .contains("'proto h2' with 'alpn http/1.1'"));
        assert_eq!(
            bad("backend b\n    mode http\n    server s 127.0.0.1:1 ssl verify none alpn spdy/3\n"),
            "t.conf:3: 'server': alpn 'spdy/3': lb does not speak 'spdy/3' to servers (mode http speaks h2, http/1.1, http/1.0)"
        );
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 ssl verify none alpn h2,\n")
                .contains("empty protocol name")
        );
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 protoo h2\n").contains("did you mean 'proto'")
        );
        assert_eq!(
            bad("backend b\n    mode http\n    server a 127.0.0.1:1 proto h2\n    server b 127.0.0.1:2\n"),
            "t.conf:4: 'server': a backend's servers speak one HTTP version: 'a' speaks HTTP/2, 'b' HTTP/1.1"
        );
        // In mode tcp the server's ALPN is its own business.
        ok("backend b\n    mode tcp\n    server s 127.0.0.1:1 ssl verify none alpn h2\n");
    }

    #[test]
    fn grpc_check() {
        let c = ok("defaults\n    option grpc-check\nbackend a\n    mode http\n    server s 127.0.0.1:1 proto h2 check\nbackend b\n    option grpc-check my.pkg.Echo\nbackend h\n    option grpc-check\n    option httpchk /x\nbackend g\n    option httpchk /x\n    option grpc-check\n");
        let b = &c.backends;
        assert_eq!(b[0].grpc_check.as_ref().unwrap().service, "");
        assert_eq!(b[1].grpc_check.as_ref().unwrap().service, "my.pkg.Echo");
        // The last of httpchk and grpc-check wins.
        assert!(b[2].grpc_check.is_none() && b[2].httpchk.is_some());
        assert!(b[3].grpc_check.is_some() && b[3].httpchk.is_none());
        assert_eq!(
            bad("frontend f\n    option grpc-check\n"),
            "t.conf:2: 'option': 'option grpc-check' is not allowed in a frontend section"
        );
        assert!(
            bad("backend b\n    option grpc-check a b\n").contains("unexpected extra argument 'b'")
        );
        let long = "x".repeat(128);
        assert!(bad(&format!("backend b\n    option grpc-check {long}\n"))
            .contains("at most 127 bytes"));
        assert!(bad("backend b\n    option grpc-chek\n").contains("did you mean 'grpc-check'"));
    }

    #[test]
    fn bind_proto_h2() {
        let c = ok("frontend f\n    mode http\n    bind 127.0.0.1:0 proto h2\n    bind 127.0.0.1:0 ssl self-signed a proto h2\n    bind 127.0.0.1:0\n");
        let b = &c.frontends[0].binds;
        assert!(b[0].h2 && b[0].tls.is_none());
        // h2 only over TLS: ALPN offers h2 alone unless told otherwise.
        assert!(b[1].h2);
        assert_eq!(b[1].tls.as_ref().unwrap().alpn, [b"h2".to_vec()]);
        assert!(!b[2].h2);
        assert_eq!(
            bad("frontend f\n    mode http\n    bind :0 proto h3\n"),
            "t.conf:3: 'bind': 'proto h3': lb speaks 'proto h2' only (HTTP/1 is the default)"
        );
        assert!(bad("frontend f\n    mode http\n    bind :0 proto\n")
            .contains("'proto' needs a protocol"));
        assert_eq!(
            bad("frontend f\n    mode tcp\n    bind :0 proto h2\n"),
            "t.conf:3: 'bind': 'proto h2' needs mode http (in mode tcp bytes pass as they are)"
        );
    }

    #[test]
    fn tune_h2_limits() {
        let c = ok("global\n    tune.bufsize 8k\n");
        assert_eq!(c.global.h2, H2Tune::default());
        assert_eq!(c.global.h2.max_concurrent_streams, 100);
        assert_eq!(c.global.h2.initial_window_size, 65_535);
        // Small by default: the HTTP/1 head limit, not the h2 crate's 16 MiB.
        assert_eq!(c.global.h2_max_header_list_size(), 8192);
        let c = ok("global\n    tune.h2.max-concurrent-streams 10\n    tune.h2.max-header-list-size 32k\n    tune.h2.initial-window-size 1m\n    tune.h2.fe.glitches-threshold 50\n    tune.h2.fe.max-pending-resets 5\n    tune.h2.fe.max-error-resets 7\n");
        let h = c.global.h2;
        assert_eq!(h.max_concurrent_streams, 10);
        assert_eq!(c.global.h2_max_header_list_size(), 32 << 10);
        assert_eq!(h.initial_window_size, 1 << 20);
        assert_eq!(h.glitches_threshold, 50);
        assert_eq!(h.max_pending_resets, 5);
        assert_eq!(h.max_error_resets, 7);
        assert!(bad("global\n    tune.h2.max-concurrent-streams 0\n")
            .starts_with("t.conf:2: 'tune.h2.max-concurrent-streams': "));
        assert!(bad("global\n    tune.h2.initial-window-size 4g\n").contains("out of range"));
        assert!(
            bad("global\n    tune.h2.max-header-list-size 100\n").contains("out of range (1k..1m)")
        );
        assert!(bad("global\n    tune.h2.fe.glitches-threshold lots\n").contains("lots"));
    }

    #[test]
    fn server_sni_forms() {
        // The forms themselves: conf::tls::tests::sni_forms.
        let c = ok("backend b\n    mode http\n    server s 127.0.0.1:1 ssl verify none sni str(a.test)\n    server h 127.0.0.1:1 ssl verify none sni req.hdr(host)\n");
        let t = |i: usize| c.backends[0].servers[i].opts.tls.clone().unwrap();
        assert_eq!(
            (t(0).sni.as_deref(), t(0).sni_from_request),
            (Some("a.test"), false)
        );
        assert_eq!((t(1).sni, t(1).sni_from_request), (None, true));
        assert!(
            bad("backend b\n    server s 127.0.0.1:1 ssl verify none sni req.hdr(x-host)\n")
                .starts_with("t.conf:2: 'server': 'sni req.hdr(x-host)': unsupported expression")
        );
        assert_eq!(
            bad("backend b\n    mode tcp\n    server s 127.0.0.1:1 ssl verify none sni req.hdr(host)\n"),
            "t.conf:3: 'server': 'sni req.hdr(host)' needs mode http (in mode tcp there is no request)"
        );
    }

    #[test]
    fn lexer_errors_carry_line() {
        assert_eq!(
            bad("global\n    nbthread \"2\n"),
            "t.conf:2: unterminated double quote"
        );
    }

    #[test]
    fn web_and_app_sections() {
        // Roots are relative to the conf file's directory, and must exist.
        let dir = crate::testutil::TempDir::new("model-web");
        std::fs::create_dir(dir.join("www")).unwrap();
        let file = dir.join("t.conf").display().to_string();
        let parse = |t: &str| parse_conf(&file, t);
        let bad = |t: &str| parse(t).unwrap_err().to_string().replace(&file, "t.conf");
        let c = parse("web w\n    bind 127.0.0.1:0\n    root www\n    app /api/ 127.0.0.1:9001\napp a\n    bind 127.0.0.1:0\n    kv-primary 127.0.0.1:6379\n").unwrap();
        assert_eq!(c.webs[0].name, "w");
        assert_eq!(c.webs[0].root, dir.join("www"));
        assert_eq!(
            c.apps[0].kv_primary,
            "127.0.0.1:6379".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            bad("web w\n    bind 127.0.0.1:0\n    root www\nweb w\n    bind 127.0.0.1:0\n    root www\n"),
            "t.conf:4: duplicate web name 'w'"
        );
        assert_eq!(
            bad("app a\n    bind 127.0.0.1:0\n"),
            "t.conf:1: app 'a' has no 'kv-primary' (or 'kv-sentinel') line"
        );
        assert_eq!(
            bad("web w\n    bind 127.0.0.1:8000\n    root www\napp a\n    bind 127.0.0.1:8000\n    kv-primary 127.0.0.1:1\n"),
            "t.conf:5: address 127.0.0.1:8000 is already bound by another listener"
        );
        assert!(bad("webb w\n").contains("did you mean 'web'"));
        let e = bad("web w\n    bind 127.0.0.1:0\n    root nowww\n");
        assert!(
            e.starts_with("t.conf:3: 'root': cannot open '")
                && e.ends_with("No such file or directory (os error 2)"),
            "{e}"
        );
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(bad("web w\n    bind 127.0.0.1:0\n    root file\n")
            .ends_with("/file' is not a directory"));
    }

    #[test]
    fn what_would_fail_at_start_fails_check() {
        assert_eq!(
            bad("frontend f\n    bind 127.0.0.1:0\n    timeout client 0\n"),
            "t.conf:3: 'timeout': 'timeout client' must be more than 0 (lb has no unlimited timeouts)"
        );
        assert!(bad("global\n    access-log /nonexistent/dir/x.log\n")
            .contains("t.conf:2: 'access-log': directory '/nonexistent/dir' does not exist"));
        assert!(bad("global\n    access-log /tmp\n").contains("'/tmp' is a directory"));
        // 192.0.2.0/24 is for documentation: never an address of this host.
        assert!(bad("frontend f\n    bind 192.0.2.1:80\n")
            .starts_with("t.conf:2: address 192.0.2.1 is not an address of this host"));
    }
}
