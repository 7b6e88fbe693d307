//! HAProxy keywords beyond lb's core conf: what they mean in lb, or why they
//! are accepted with a warning (they only manage the process, or change
//! nothing about what traffic is allowed or where it goes), or an error
//! saying lb does not implement them. A child of `model` (it extends its
//! `Builder` and `Draft`); `model` calls in at a few places.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::rules::{self, HttpRule, Phase};
use super::super::sample::{TableData, TableKey};
use super::parse::{self, did_you_mean, ConfError, Directive};
use super::{Builder, Draft, Mode, D, F, L};

/// Global keywords that only manage the process, with what lb does instead.
const GLOBAL_WARN: &[(&str, &str)] = &[
    (
        "chroot",
        "lb does not chroot; run it in a container or with systemd's sandboxing",
    ),
    ("user", "lb runs as the user that starts it"),
    ("group", "lb runs as the group that starts it"),
    ("uid", "lb runs as the user that starts it"),
    ("gid", "lb runs as the group that starts it"),
    (
        "daemon",
        "lb stays in the foreground; let the service manager daemonize it",
    ),
    (
        "pidfile",
        "lb writes no pid file; the service manager knows its pid",
    ),
    ("nbproc", "lb is one process with worker threads (nbthread)"),
    ("master-worker", "lb is one process; reloads are SIGHUP"),
    (
        "log",
        "lb writes its own log to stderr and the access log to 'access-log'",
    ),
    ("log-send-hostname", "lb's log has no syslog header"),
    ("log-tag", "lb's log has no syslog header"),
    (
        "hard-stop-after",
        "lb's drain is bounded by 'timeout drain'",
    ),
    ("ulimit-n", "lb raises its file limit itself"),
    ("description", "no effect"),
    ("node", "no effect"),
    ("spread-checks", "lb spreads checks itself"),
    ("zero-warning", "lb's warnings never stop it"),
    ("strict-limits", "lb raises its file limit itself"),
    ("localpeer", "lb has no peers: stick tables are local"),
    (
        "tune.ssl.default-dh-param",
        "rustls does not use finite-field DH",
    ),
    ("ssl-dh-param-file", "rustls does not use finite-field DH"),
    ("ssl-server-verify", "set 'verify' on each server"),
    ("expose-experimental-directives", "no effect"),
    ("set-dumpable", "no effect"),
    ("maxsslconn", "'maxconn' bounds every connection"),
    ("lua-load", "lb has no Lua; rules that call Lua are errors"),
    ("setenv", "set the environment before starting lb"),
    ("presetenv", "set the environment before starting lb"),
    ("insecure-fork-wanted", "lb does not fork"),
];

/// Proxy keywords (frontend, backend, listen, defaults) accepted with a warning.
const PROXY_WARN: &[(&str, &str)] = &[
    ("log", "lb writes its access log to 'access-log' (global)"),
    ("description", "no effect"),
    ("id", "no effect"),
    ("fullconn", "lb does not scale server maxconn dynamically"),
    (
        "load-server-state-from-file",
        "lb keeps server state across reloads itself",
    ),
    ("log-format", "set 'log-format' in global"),
    ("log-tag", "no effect"),
    ("unique-id-format", "lb's access log has its own fields"),
    ("unique-id-header", "lb's access log has its own fields"),
    ("capture", "lb's access log has its own fields"),
    ("email-alert", "lb sends no mail"),
    (
        "monitor",
        "'monitor fail' is not implemented; 'monitor-uri' answers 200",
    ),
];

/// Options accepted with a warning (no effect on what is allowed or where it goes).
const OPTION_WARN: &[(&str, &str)] = &[
    ("httplog", "lb's access log has its own format"),
    ("tcplog", "lb's access log has its own format"),
    ("dontlognull", "lb's access log has its own format"),
    ("dontlog-normal", "lb's access log has its own format"),
    ("log-health-checks", "lb logs every health transition"),
    ("log-separate-errors", "lb's access log has its own format"),
    ("logasap", "lb logs at the end of each exchange"),
    ("httpslog", "lb's access log has its own format"),
    (
        "prefer-last-server",
        "lb's keep-alive pool prefers idle connections already",
    ),
    (
        "abortonclose",
        "lb always abandons a request whose client left",
    ),
    (
        "http-ignore-probes",
        "lb closes idle pre-connects without a log line anyway",
    ),
    ("socket-stats", "lb's metrics are per frontend"),
    ("http-buffer-request", "lb streams request bodies"),
    ("tcpka", "lb sets no TCP keepalive"),
    ("clitcpka", "lb sets no TCP keepalive"),
    ("srvtcpka", "lb sets no TCP keepalive"),
    ("nolinger", "lb lingers only over unread request bodies"),
    ("http-no-delay", "lb sets TCP_NODELAY on server connections"),
    (
        "http-pretend-keepalive",
        "lb speaks keep-alive to servers itself",
    ),
    ("contstats", "lb counts bytes as they pass"),
    (
        "independent-streams",
        "lb's timeouts are per direction already",
    ),
    ("checkcache", "lb has no cache"),
    ("http-use-htx", "no effect"),
    ("splice-auto", "lb splices in TCP mode automatically"),
    ("splice-request", "lb splices in TCP mode automatically"),
    ("splice-response", "lb splices in TCP mode automatically"),
];

/// Sections lb reads no lines of, with why.
pub const SECTION_WARN: &[(&str, &str)] = &[
    (
        "peers",
        "lb has no peers: stick tables are local to each lb",
    ),
    (
        "cache",
        "lb has no cache: responses are never served from one",
    ),
    ("mailers", "lb sends no mail"),
    ("program", "lb runs no programs"),
    (
        "userlist",
        "lb has no users; rules that need them ('auth') are errors",
    ),
    ("ring", "lb's log goes to stderr and 'access-log'"),
];

/// Sections lb refuses, with why.
pub const SECTION_ERR: &[(&str, &str)] = &[];

/// Per-run HAProxy state of the builder: the global path settings.
#[derive(Debug, Clone, Default)]
pub struct HapGlobal {
    /// `crt-base DIR`: relative `crt` paths are under it.
    pub crt_base: Option<PathBuf>,
    /// `ca-base DIR`: relative `ca-file` paths are under it.
    pub ca_base: Option<PathBuf>,
    /// `default-path config`: other relative paths are under the conf's directory.
    pub default_path_config: bool,
    /// `resolvers NAME` sections: matched with servers once the file is read.
    pub resolvers: std::collections::HashMap<String, super::super::haproxy_dns::ResolversConf>,
    /// `http-errors NAME` sections read so far: their `errorfile` lines.
    pub http_errors: std::collections::HashMap<String, Vec<ErrorFile>>,
}

/// An `errorfile`: the status it answers, and the raw response.
pub type ErrorFile = (u16, std::sync::Arc<Vec<u8>>);

/// The statuses HAProxy takes an `errorfile` for.
const ERRORFILE_CODES: &[u16] = &[
    200, 400, 401, 403, 404, 405, 407, 408, 410, 413, 425, 429, 500, 501, 502, 503, 504,
];

/// HAProxy's limit: an error file fits in one buffer (`tune.bufsize`).
const ERRORFILE_MAX: u64 = 16 << 10;

/// `cookie NAME insert|rewrite|prefix [indirect] [nocache] [httponly] [secure] ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConf {
    pub line: usize,
    pub name: String,
    pub mode: CookieMode,
    /// The server does not see lb's cookie (insert: removed from requests).
    pub indirect: bool,
    /// Responses that set the cookie are marked `Cache-Control: private`.
    pub nocache: bool,
    pub httponly: bool,
    pub secure: bool,
    /// `preserve`: a cookie the server sets itself is left as it is.
    pub preserve: bool,
    pub domain: Vec<String>,
    pub attrs: Vec<String>,
    pub maxage: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    Insert,
    Rewrite,
    Prefix,
}

/// `stick-table type ip|ipv6|string|integer [len N] size N [expire T] [store ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickTableConf {
    pub line: usize,
    pub key: TableKeyType,
    pub size: usize,
    pub expire: Option<Duration>,
    /// What each entry counts, with the period of rates.
    pub store: Vec<(TableData, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKeyType {
    Ip,
    String,
    Integer,
}

impl StickTableConf {
    pub fn stores(&self, d: TableData) -> bool {
        self.store.iter().any(|(x, _)| *x == d)
    }
    pub fn period(&self, d: TableData) -> Option<Duration> {
        self.store.iter().find(|(x, _)| *x == d).map(|(_, p)| *p)
    }
}

/// One step of `option tcp-check`.
#[derive(Debug, Clone)]
pub enum TcpCheckStep {
    /// `tcp-check connect [port N] [ssl] [send-proxy]` (a check always starts connected).
    Connect {
        port: Option<u16>,
    },
    Send(Vec<u8>),
    Expect {
        negate: bool,
        what: Expect,
    },
}

#[derive(Debug, Clone)]
pub enum Expect {
    String(Vec<u8>),
    Rstring(regex::bytes::Regex),
    Binary(Vec<u8>),
    /// `option mysql-check`: the Nth packet of the reply (1: the server's
    /// greeting, 2: the answer to the login) is whole and not an error packet.
    MysqlPacket(u8),
    /// `option pgsql-check`: the reply is not an error but an Authentication
    /// message (as HAProxy: OK or a request for a password, both up).
    PgsqlAuth,
}

impl PartialEq for TcpCheckStep {
    fn eq(&self, o: &Self) -> bool {
        format!("{self:?}") == format!("{o:?}")
    }
}
impl Eq for TcpCheckStep {}

/// HAProxy settings of a backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendHap {
    /// Servers that follow DNS answers (`resolvers`, `server-template`); they
    /// are not in `servers` until `balance::resolvers` fills them in.
    pub dns: Vec<super::super::haproxy_dns::DnsServers>,
    pub cookie: Option<CookieConf>,
    /// A backend section with only a stick-table is a table (`table T` names it).
    pub stick_table: Option<StickTableConf>,
    /// `option tcp-check` steps (also `option redis-check`, `ssl-hello-chk`).
    pub tcp_check: Option<Vec<TcpCheckStep>>,
    /// `option persist`: a cookie naming a down server still goes there.
    pub persist: bool,
    /// `option http-server-close` / `httpclose`: one server connection per request.
    pub server_close: bool,
    /// `compression ...` lines of the backend (they win over the frontend's).
    pub compression: Option<super::super::haproxy_comp::CompConf>,
    /// `timeout queue`: how long a request waits for a server slot
    /// (`maxconn`); unset: `timeout connect`, as HAProxy.
    pub timeout_queue: Option<Duration>,
    /// `balance uri|url_param|hdr(N)`: what a request is hashed on.
    pub hash_on: Option<super::super::haproxy_hash::HashOn>,
    /// `hash-type`: how a hash (also `balance source`'s) maps to a server.
    pub hash_type: super::super::haproxy_hash::HashType,
}

/// HAProxy settings of a frontend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrontendHap {
    pub stick_table: Option<StickTableConf>,
    /// `http-response` rules, in order.
    pub res_rules: Vec<HttpRule>,
    /// `http-after-response` rules, in order.
    pub after_rules: Vec<HttpRule>,
    /// `monitor-uri PATH`: answered 200 by lb.
    pub monitor_uri: Option<String>,
    /// `stats uri PATH`: answered by lb with where the stats are.
    pub stats_uri: Option<String>,
    /// `option httpclose`: the client connection closes after each response.
    pub client_close: bool,
    /// `option forwardfor except NET`: clients in it get no X-Forwarded-For.
    pub forwardfor_except: Option<std::sync::Arc<super::super::cidr::CidrSet>>,
    /// `option forwardfor header NAME`.
    pub forwardfor_header: Option<String>,
    /// `compression ...` lines of the frontend.
    pub compression: Option<super::super::haproxy_comp::CompConf>,
    /// `errorfile CODE FILE` / `errorfiles NAME`: the raw responses sent
    /// instead of lb's own error page of that status.
    pub errorfiles: Vec<ErrorFile>,
}

/// HAProxy options of a server (`default-server` sets them too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHap {
    /// `cookie VALUE`: the persistence cookie's value for this server.
    pub cookie: Option<String>,
    /// `send-proxy` (1) / `send-proxy-v2` (2): a PROXY header opens each connection.
    pub send_proxy: u8,
    /// `port N` / `addr A`: where checks go.
    pub check_port: Option<u16>,
    pub check_addr: Option<std::net::IpAddr>,
    /// `maxconn N`: more concurrent requests go to another server, or wait.
    pub maxconn: Option<usize>,
    /// `maxqueue N`: at most N requests wait for this server (0: no bound).
    pub maxqueue: Option<usize>,
    /// `agent-check` with `agent-port`, `agent-inter`, `agent-send`, `agent-addr`.
    pub agent: Option<AgentConf>,
}

/// An agent check: a TCP agent beside the server whose one-line reply sets
/// the server's state and weight (see `balance::agent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentConf {
    pub enabled: bool,
    pub port: Option<u16>,
    pub addr: Option<std::net::IpAddr>,
    /// `agent-inter`: default the server's `inter`.
    pub inter: Option<std::time::Duration>,
    pub send: Vec<u8>,
}

/// HAProxy options of a bind line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindHap {
    /// `accept-proxy`: each connection starts with a PROXY header (v1 or v2).
    pub accept_proxy: bool,
    /// `verify none|optional|required` (client certificates).
    pub verify: Option<String>,
    /// `ca-file PATH`, `crl-file PATH`: what client certificates are checked against.
    pub ca_file: Option<String>,
    pub crl_file: Option<String>,
    /// `crt-list FILE` lines with SNI filters: (certificate path, the names it serves).
    pub crt_names: Vec<(String, Vec<String>)>,
}

/// Server options that take one value and only tune what lb does anyway.
const SERVER_WARN1: &[(&str, &str)] = &[
    ("minconn", "lb does not scale server maxconn dynamically"),
    (
        "slowstart",
        "a server back up takes its full weight at once",
    ),
    ("on-error", "lb marks a server down after 'fall' failures"),
    (
        "on-marked-down",
        "lb does not cut sessions of a server marked down",
    ),
    (
        "error-limit",
        "lb marks a server down after 'fall' failures",
    ),
    ("id", "no effect"),
    ("ciphers", "rustls's cipher suites are used"),
    ("ciphersuites", "rustls's cipher suites are used"),
    ("ssl-min-ver", "rustls speaks TLS 1.2 and 1.3 only"),
    ("ssl-max-ver", "rustls speaks TLS 1.2 and 1.3 only"),
    ("curves", "rustls's key exchange groups are used"),
];

/// Server flags (no value) accepted with a warning.
const SERVER_WARN0: &[(&str, &str)] = &[
    ("no-sslv3", "rustls never speaks SSLv3"),
    ("no-tlsv10", "rustls never speaks TLS 1.0"),
    ("no-tlsv11", "rustls never speaks TLS 1.1"),
    ("no-tls-tickets", "no effect on server connections"),
    ("force-tlsv12", "rustls speaks TLS 1.2 and 1.3"),
    ("resolve-prefer", "lb resolves server names at start"),
    ("non-stick", "no effect"),
    ("check-send-proxy", "checks follow send-proxy"),
];

/// Bind options that tune TLS or the socket and are accepted with a warning;
/// the number is how many values follow.
const BIND_WARN: &[(&str, usize, &str)] = &[
    ("name", 1, ""),
    ("v4v6", 0, ""),
    ("v6only", 0, ""),
    ("transparent", 0, "lb does not bind foreign addresses"),
    ("defer-accept", 0, ""),
    ("tfo", 0, ""),
    ("maxconn", 1, "the frontend's maxconn bounds every bind"),
    ("backlog", 1, ""),
    ("process", 1, ""),
    ("thread", 1, ""),
    ("level", 1, ""),
    ("mode", 1, ""),
    ("ciphers", 1, "rustls's cipher suites are used"),
    ("ciphersuites", 1, "rustls's cipher suites are used"),
    ("curves", 1, "rustls's key exchange groups are used"),
    ("ecdhe", 1, "rustls's key exchange groups are used"),
    ("ssl-min-ver", 1, "rustls speaks TLS 1.2 and 1.3 only"),
    ("ssl-max-ver", 1, "rustls speaks TLS 1.2 and 1.3 only"),
    ("no-sslv3", 0, "rustls never speaks SSLv3"),
    ("no-tlsv10", 0, "rustls never speaks TLS 1.0"),
    ("no-tlsv11", 0, "rustls never speaks TLS 1.1"),
    ("force-tlsv12", 0, "rustls speaks TLS 1.2 and 1.3"),
    (
        "prefer-client-ciphers",
        0,
        "rustls follows its own cipher order",
    ),
    ("allow-0rtt", 0, "lb does not accept 0-RTT"),
];

/// `ssl-default-bind-*` and friends: the policy of rustls applies (TLS 1.2 and
/// 1.3, AEAD suites only), a warning says so. A policy asking for more than
/// rustls allows (TLS 1.0) is an error, never silently weaker nor stronger.
fn tls_default(kw: &str, args: &[String]) -> Option<Result<String, String>> {
    if !kw.starts_with("ssl-default-") {
        return None;
    }
    let what = kw.rsplit('-').next().unwrap_or("");
    if !["ciphers", "ciphersuites", "options", "curves", "sigalgs"].contains(&what) {
        return Some(Err(format!("unknown keyword '{kw}'")));
    }
    if what == "options" {
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "ssl-min-ver" | "ssl-max-ver" => {
                    let v = args.get(i + 1).map(String::as_str).unwrap_or("");
                    if args[i] == "ssl-min-ver" && ["SSLv3", "TLSv1.0", "TLSv1.1"].contains(&v) {
                        return Some(Err(format!(
                            "'{kw} ssl-min-ver {v}': lb (rustls) speaks TLS 1.2 and 1.3 only"
                        )));
                    }
                    i += 2;
                }
                "no-sslv3"
                | "no-tlsv10"
                | "no-tlsv11"
                | "no-tls-tickets"
                | "prefer-client-ciphers"
                | "force-tlsv12"
                | "no-tlsv12"
                | "no-tlsv13"
                | "force-tlsv13" => i += 1,
                x => {
                    return Some(Err(format!("'{kw}': unknown option '{x}'")));
                }
            }
        }
    }
    Some(Ok(format!(
        "'{kw}': lb uses rustls's policy (TLS 1.2 and 1.3, AEAD suites with ECDHE, X25519/P-256/P-384)"
    )))
}

impl Builder {
    /// HAProxy global keywords lb handles here; `None` when not one of them.
    pub(super) fn hap_global(&mut self, d: &Directive) -> Option<Result<(), ConfError>> {
        let kw = d.keyword();
        let a = &d.args;
        if super::GLOBAL_KEYWORDS.contains(&kw) {
            return None;
        }
        if let Some((_, why)) = GLOBAL_WARN.iter().find(|(k, _)| *k == kw) {
            self.warn(d.line, format!("'{kw}' has no effect in lb: {why}"));
            return Some(Ok(()));
        }
        if let Some(r) = tls_default(kw, &a[1..]) {
            return Some(match r {
                Ok(w) => {
                    self.warn(d.line, w);
                    Ok(())
                }
                Err(m) => Err(self.err(d.line, m)),
            });
        }
        let e = |s: &Self, m: String| s.err(d.line, format!("'{kw}': {m}"));
        Some(match kw {
            "stats" => {
                match a.get(1).map(String::as_str) {
                    Some("socket") => self.warn(
                        d.line,
                        "'stats socket': lb's runtime API and stats are on the admin listener (global 'admin ADDR')",
                    ),
                    _ => self.warn(d.line, format!("'{}' has no effect in lb: see 'admin'", a.join(" "))),
                }
                Ok(())
            }
            "ca-base" | "crt-base" => match super::one_arg(a) {
                Err(m) => Err(e(self, m)),
                Ok(dir) => {
                    let p = self.base().join(dir);
                    if kw == "ca-base" {
                        self.hap.ca_base = Some(p);
                    } else {
                        self.hap.crt_base = Some(p);
                    }
                    Ok(())
                }
            },
            "default-path" => {
                match a.get(1).map(String::as_str) {
                    Some("config") => self.hap.default_path_config = true,
                    Some("current") => self.hap.default_path_config = false,
                    _ => self.warn(d.line, "'default-path': lb takes relative paths from the conf's directory or the working directory"),
                }
                Ok(())
            }
            _ if kw.starts_with("tune.") => {
                self.warn(d.line, format!("'{kw}' has no effect in lb"));
                Ok(())
            }
            _ => return None,
        })
    }

    /// `errorfile CODE FILE`: the status and the file's bytes, checked to be
    /// an HTTP response that fits HAProxy's limit.
    fn errorfile(&self, a: &[String]) -> Result<ErrorFile, String> {
        let [code, file] = a else {
            return Err("expected 'errorfile CODE FILE'".into());
        };
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| ERRORFILE_CODES.contains(c))
            .ok_or_else(|| {
                format!("status '{code}' takes no errorfile (HAProxy's list: {ERRORFILE_CODES:?})")
            })?;
        let path = self.hap_path(file, None);
        let meta =
            std::fs::metadata(&path).map_err(|err| format!("cannot read '{path}': {err}"))?;
        if meta.len() > ERRORFILE_MAX {
            return Err(format!("'{path}' is larger than {ERRORFILE_MAX} bytes"));
        }
        let body = std::fs::read(&path).map_err(|err| format!("cannot read '{path}': {err}"))?;
        let has_end =
            body.windows(4).any(|w| w == b"\r\n\r\n") || body.windows(2).any(|w| w == b"\n\n");
        if !body.starts_with(b"HTTP/1.") || !has_end {
            return Err(format!(
                "'{path}' is not an HTTP response (status line, headers, blank line)"
            ));
        }
        Ok((code, std::sync::Arc::new(body)))
    }

    /// A server line (or template) that follows DNS: its options are read by
    /// lb's own server parser on a stand-in address, and kept as the
    /// prototype of each server an answer brings.
    #[allow(clippy::too_many_arguments)]
    fn dns_server(
        &mut self,
        mask: u8,
        kind: &str,
        d: &Directive,
        p: &mut Draft,
        names: Vec<String>,
        fqdn: String,
        port: Option<u16>,
        opts: &[String],
    ) -> Result<(), ConfError> {
        let e = |s: &Self, m: &str| s.err(d.line, format!("'{}': {m}", d.keyword()));
        let (res, prefer_v6, rest) =
            super::super::haproxy_dns::split_opts(opts).map_err(|m| e(self, &m))?;
        let Some(res) = res else {
            return Err(e(
                self,
                "needs 'resolvers NAME' (lb resolves at run time only through a resolvers section)",
            ));
        };
        if names.iter().any(|n| p.servers.iter().any(|s| &s.name == n)) {
            return Err(e(self, "duplicate server name"));
        }
        let mut args = vec![
            "server".to_string(),
            names[0].clone(),
            format!("127.0.0.1:{}", port.unwrap_or(1)),
        ];
        args.extend(rest);
        let d2 = Directive { args, ..d.clone() };
        let before = p.servers.len();
        self.proxy_directive(mask, kind, &d2, p)?;
        let Some(proto) = (p.servers.len() > before)
            .then(|| p.servers.pop())
            .flatten()
        else {
            return Err(e(self, "invalid server line"));
        };
        p.hap_b.dns.push(super::super::haproxy_dns::DnsServers {
            line: d.line,
            names,
            fqdn,
            port,
            resolvers: res,
            prefer_v6,
            conf: None,
            proto,
        });
        Ok(())
    }

    /// A `resolvers NAME` section.
    pub(super) fn hap_resolvers(&mut self, line: usize, name: Option<&String>, ds: &[Directive]) {
        let Some(name) = name else {
            let e = self.err(line, "'resolvers' needs a name");
            self.errors.push(e);
            return;
        };
        let (r, errs) = super::super::haproxy_dns::section(name, line, ds);
        for (l, m) in errs {
            let e = self.err(l, m);
            self.errors.push(e);
        }
        self.hap.resolvers.insert(name.clone(), r);
    }

    /// Once every section is read: each DNS server gets its resolvers section.
    pub(super) fn hap_link_resolvers(&mut self) {
        let mut errs = Vec::new();
        for b in &mut self.conf.backends {
            for dns in &mut b.hap.dns {
                match self.hap.resolvers.get(&dns.resolvers) {
                    Some(r) => dns.conf = Some(r.clone()),
                    None => errs.push((
                        dns.line,
                        format!("no 'resolvers {}' section", dns.resolvers),
                    )),
                }
            }
        }
        for (l, m) in errs {
            let e = self.err(l, m);
            self.errors.push(e);
        }
    }

    /// An `http-errors NAME` section: its `errorfile` lines, for `errorfiles NAME`.
    pub(super) fn hap_http_errors(&mut self, line: usize, name: Option<&String>, ds: &[Directive]) {
        let Some(name) = name else {
            let e = self.err(line, "'http-errors' needs a name");
            self.errors.push(e);
            return;
        };
        let mut files = Vec::new();
        for d in ds {
            if d.keyword() != "errorfile" {
                let e = self.err(
                    d.line,
                    format!(
                        "'{}' is not allowed in an http-errors section (errorfile CODE FILE)",
                        d.keyword()
                    ),
                );
                self.errors.push(e);
                continue;
            }
            match self.errorfile(&d.args[1..]) {
                Ok(f) => files.push(f),
                Err(m) => {
                    let e = self.err(d.line, format!("'errorfile': {m}"));
                    self.errors.push(e);
                }
            }
        }
        self.hap.http_errors.insert(name.clone(), files);
    }

    /// A path from the conf: relative ones under `base_dir` (crt-base, ca-base)
    /// or, with `default-path config`, the conf's directory.
    pub(super) fn hap_path(&self, p: &str, base_dir: Option<&Path>) -> String {
        let path = Path::new(p);
        if path.is_absolute() {
            return p.to_string();
        }
        match base_dir {
            Some(b) => b.join(path).display().to_string(),
            None if self.hap.default_path_config => self.base().join(path).display().to_string(),
            None => p.to_string(),
        }
    }

    /// Takes the HAProxy-only options out of a bind line's options (into
    /// `BindHap`), resolving `crt` paths; returns what lb's own parser reads.
    pub(super) fn hap_bind_args(
        &self,
        args: &[String],
        warns: &mut Vec<String>,
    ) -> Result<(Vec<String>, BindHap), String> {
        let mut out = Vec::new();
        let mut hap = BindHap::default();
        let mut i = 0;
        while i < args.len() {
            let o = args[i].as_str();
            if o == "accept-proxy" {
                hap.accept_proxy = true;
                i += 1;
                continue;
            }
            if o == "crt" {
                if let Some(p) = args.get(i + 1) {
                    out.push("crt".into());
                    out.push(self.hap_path(p, self.hap.crt_base.clone().as_deref()));
                    i += 2;
                    continue;
                }
            }
            if let Some((_, n, why)) = BIND_WARN.iter().find(|(k, _, _)| *k == o) {
                if !why.is_empty() {
                    warns.push(format!("'bind ... {o}': {why}"));
                }
                i += 1 + n;
                continue;
            }
            let val = |i: usize| {
                args.get(i + 1)
                    .cloned()
                    .ok_or_else(|| format!("'{o}' needs a value"))
            };
            match o {
                "verify" => {
                    let v = val(i)?;
                    if !["none", "optional", "required"].contains(&v.as_str()) {
                        return Err(format!("'verify {v}': expected none, optional or required"));
                    }
                    hap.verify = Some(v);
                    i += 2;
                    continue;
                }
                "ca-file" | "crl-file" => {
                    let p = self.hap_path(&val(i)?, self.hap.ca_base.clone().as_deref());
                    if o == "ca-file" {
                        hap.ca_file = Some(p);
                    } else {
                        hap.crl_file = Some(p);
                    }
                    i += 2;
                    continue;
                }
                "crt-list" => {
                    let list = self.hap_path(&val(i)?, None);
                    let text = std::fs::read_to_string(&list)
                        .map_err(|e| format!("cannot read crt-list '{list}': {e}"))?;
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let mut words = line.split_whitespace();
                        let Some(path) = words.next() else { continue };
                        let rest: Vec<&str> = words.collect();
                        let mut names = Vec::new();
                        let mut k = 0;
                        if rest.first().is_some_and(|w| w.starts_with('[')) {
                            let opts: Vec<&str> = rest
                                .iter()
                                .take_while(|w| !w.ends_with(']'))
                                .copied()
                                .collect();
                            k = opts.len() + 1;
                            let inner = rest[..k.min(rest.len())].join(" ");
                            let inner = inner.trim_start_matches('[').trim_end_matches(']').trim();
                            if !inner.is_empty() {
                                return Err(format!("crt-list '{list}' line {}: per-certificate options '[{inner}]' are not implemented", n + 1));
                            }
                        }
                        for f in rest.iter().skip(k) {
                            if f.starts_with('!') {
                                return Err(format!("crt-list '{list}' line {}: negative filter '{f}' is not implemented", n + 1));
                            }
                            names.push(f.to_ascii_lowercase());
                        }
                        let p = self.hap_path(path, self.hap.crt_base.clone().as_deref());
                        out.push("crt".into());
                        out.push(p.clone());
                        if !names.is_empty() {
                            hap.crt_names.push((p, names));
                        }
                    }
                    i += 2;
                    continue;
                }
                "npn"
                | "ssl-default-bind-options"
                | "ca-ignore-err"
                | "crt-ignore-err"
                | "ca-verify-file" => {
                    return Err(format!("bind option '{o}' is not implemented"));
                }
                _ => {}
            }
            out.push(args[i].clone());
            i += 1;
        }
        Ok((out, hap))
    }

    /// The bind's TLS with what HAProxy options add: client certificates
    /// (`verify`, `ca-file`, `crl-file`), `crt-list` names, and a warning per
    /// certificate served though expired.
    pub(super) fn hap_bind_tls(
        &self,
        tls: Option<super::super::tls::BindTls>,
        hap: &BindHap,
        warns: &mut Vec<String>,
    ) -> Result<Option<super::super::tls::BindTls>, String> {
        let Some(mut t) = tls else {
            if hap.verify.is_some() || hap.ca_file.is_some() || hap.crl_file.is_some() {
                return Err("'verify', 'ca-file' and 'crl-file' need 'ssl'".into());
            }
            return Ok(None);
        };
        for c in &mut t.certs {
            if let Some(w) = &c.warning {
                warns.push(w.clone());
            }
            if let Some((_, names)) = hap.crt_names.iter().find(|(p, _)| *p == c.source) {
                c.names = names.clone();
            }
        }
        match hap.verify.as_deref() {
            None | Some("none") => {
                if hap.crl_file.is_some() {
                    return Err("'crl-file' needs 'verify optional|required'".into());
                }
            }
            Some(v) => {
                let ca = hap
                    .ca_file
                    .as_deref()
                    .ok_or(format!("'verify {v}' needs 'ca-file PATH'"))?;
                let crls = match &hap.crl_file {
                    Some(f) => super::super::tls::load_crl(f)?,
                    None => Vec::new(),
                };
                t.client_auth = Some(super::super::tls::ClientAuth {
                    required: v == "required",
                    roots: super::super::tls::load_ca(ca)?,
                    crls,
                });
            }
        }
        Ok(Some(t))
    }

    /// Takes the HAProxy-only options out of a server line's options.
    pub(super) fn hap_server_args(
        &self,
        args: &[String],
        hap: &mut ServerHap,
        warns: &mut Vec<String>,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut i = 0;
        let val = |i: usize, o: &str| {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("'{o}' needs a value"))
        };
        while i < args.len() {
            let o = args[i].as_str();
            match o {
                "cookie" => {
                    hap.cookie = Some(val(i, o)?);
                    i += 2;
                }
                "send-proxy" => {
                    hap.send_proxy = 1;
                    i += 1;
                }
                "send-proxy-v2" => {
                    hap.send_proxy = 2;
                    i += 1;
                }
                "no-send-proxy" | "no-send-proxy-v2" => {
                    hap.send_proxy = 0;
                    i += 1;
                }
                "port" => {
                    hap.check_port = Some(parse::number(&val(i, o)?, 1, 65535)? as u16);
                    i += 2;
                }
                "addr" => {
                    let v = val(i, o)?;
                    hap.check_addr = Some(
                        v.parse()
                            .map_err(|_| format!("invalid check address '{v}'"))?,
                    );
                    i += 2;
                }
                "maxconn" => {
                    hap.maxconn = Some(parse::number(&val(i, o)?, 1, 10_000_000)? as usize);
                    i += 2;
                }
                "maxqueue" => {
                    let n = parse::number(&val(i, o)?, 0, 10_000_000)? as usize;
                    hap.maxqueue = (n > 0).then_some(n);
                    i += 2;
                }
                "agent-check" | "no-agent-check" => {
                    hap.agent.get_or_insert_with(Default::default).enabled = o == "agent-check";
                    i += 1;
                }
                "agent-port" => {
                    hap.agent.get_or_insert_with(Default::default).port =
                        Some(parse::number(&val(i, o)?, 1, 65535)? as u16);
                    i += 2;
                }
                "agent-addr" => {
                    let v = val(i, o)?;
                    hap.agent.get_or_insert_with(Default::default).addr = Some(
                        v.parse()
                            .map_err(|_| format!("invalid agent address '{v}'"))?,
                    );
                    i += 2;
                }
                "agent-inter" => {
                    hap.agent.get_or_insert_with(Default::default).inter =
                        Some(parse::duration(&val(i, o)?)?);
                    i += 2;
                }
                "agent-send" => {
                    hap.agent.get_or_insert_with(Default::default).send = val(i, o)?.into_bytes();
                    i += 2;
                }
                "ca-file" => {
                    let p = val(i, o)?;
                    out.push("ca-file".into());
                    out.push(self.hap_path(&p, self.hap.ca_base.clone().as_deref()));
                    i += 2;
                }
                "resolvers" | "resolve-opts" => {
                    return Err(format!(
                    "'{o}' is only for a server named by DNS (server NAME FQDN:PORT resolvers R)"
                ))
                }
                "track" | "redir" | "source" | "usesrc" | "namespace" | "crt" => {
                    return Err(format!("server option '{o}' is not implemented"))
                }
                _ => {
                    if let Some((_, why)) = SERVER_WARN1.iter().find(|(k, _)| *k == o) {
                        warns.push(format!("'server ... {o}': {why}"));
                        i += 2;
                    } else if let Some((_, why)) = SERVER_WARN0.iter().find(|(k, _)| *k == o) {
                        warns.push(format!("'server ... {o}': {why}"));
                        i += 1;
                    } else {
                        out.push(args[i].clone());
                        i += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// HAProxy proxy keywords lb handles here; `None` when not one of them.
    pub(super) fn hap_proxy(
        &mut self,
        mask: u8,
        kind: &str,
        d: &Directive,
        p: &mut Draft,
    ) -> Option<Result<(), ConfError>> {
        let kw = d.keyword();
        let a = &d.args;
        let e = |s: &Self, m: String| s.err(d.line, format!("'{kw}': {m}"));
        let front = mask & (F | L | D) != 0;
        let back = mask != F;
        let not_here =
            |s: &Self| Err(s.err(d.line, format!("'{kw}' is not allowed in a {kind} section")));
        if let Some((_, why)) = PROXY_WARN.iter().find(|(k, _)| *k == kw) {
            if kw == "errorfile" {
                if let Some(f) = a.get(2) {
                    let path = self.hap_path(f, None);
                    if let Err(err) = std::fs::metadata(&path) {
                        return Some(Err(e(self, format!("cannot read '{path}': {err}"))));
                    }
                }
            }
            self.warn(d.line, format!("'{kw}' has no effect in lb: {why}"));
            return Some(Ok(()));
        }
        Some(match kw {
            "no" => match a.get(1..).unwrap_or(&[]) {
                [l] if l == "log" => {
                    self.warn(d.line, "'no log' has no effect in lb");
                    Ok(())
                }
                [o, name] if o == "option" => {
                    match name.as_str() {
                        "http-server-close" | "httpclose" => {
                            p.hap_b.server_close = false;
                            p.hap_f.client_close = false;
                        }
                        "forwardfor" => p.forwardfor = false,
                        "redispatch" => p.redispatch = false,
                        "persist" => p.hap_b.persist = false,
                        _ => self.warn(d.line, format!("'no option {name}' has no effect in lb")),
                    }
                    Ok(())
                }
                _ => Err(e(self, "expected 'no option NAME' or 'no log'".into())),
            },
            "option" => {
                let name = a.get(1).map(String::as_str).unwrap_or("");
                if let Some((_, why)) = OPTION_WARN.iter().find(|(k, _)| *k == name) {
                    self.warn(d.line, format!("'option {name}' has no effect in lb: {why}"));
                    return Some(Ok(()));
                }
                match name {
                    "http-server-close" => {
                        p.hap_b.server_close = true;
                        Ok(())
                    }
                    "httpclose" | "forceclose" => {
                        p.hap_b.server_close = true;
                        p.hap_f.client_close = true;
                        Ok(())
                    }
                    "http-keep-alive" => {
                        p.hap_b.server_close = false;
                        p.hap_f.client_close = false;
                        Ok(())
                    }
                    "persist" if back => {
                        p.hap_b.persist = true;
                        Ok(())
                    }
                    "forwardfor" if a.len() > 2 => {
                        p.forwardfor = true;
                        let mut i = 2;
                        while i < a.len() {
                            match (a[i].as_str(), a.get(i + 1)) {
                                ("except", Some(net)) => {
                                    let mut set = super::super::cidr::CidrSet::default();
                                    if let Err(m) = set.add(net) {
                                        return Some(Err(e(self, m)));
                                    }
                                    p.hap_f.forwardfor_except = Some(std::sync::Arc::new(set));
                                }
                                ("header", Some(h)) => {
                                    p.hap_f.forwardfor_header = Some(h.clone());
                                }
                                ("if-none", None) => {
                                    return Some(Err(e(
                                        self,
                                        "'option forwardfor if-none' is not implemented".into(),
                                    )))
                                }
                                (x, _) => {
                                    return Some(Err(e(
                                        self,
                                        format!("'option forwardfor': unexpected '{x}' (except NET, header NAME)"),
                                    )))
                                }
                            }
                            i += 2;
                        }
                        Ok(())
                    }
                    "tcp-check" | "redis-check" | "ssl-hello-chk" if back => {
                        if a.len() > 2 {
                            return Some(Err(e(self, format!("unexpected extra argument '{}'", a[2]))));
                        }
                        p.httpchk = None;
                        p.grpc_check = None;
                        p.hap_b.tcp_check = Some(match name {
                            "redis-check" => super::super::happarse::redis(),
                            "ssl-hello-chk" => super::super::happarse::ssl_hello(),
                            _ => Vec::new(),
                        });
                        Ok(())
                    }
                    "mysql-check" | "pgsql-check" if back => {
                        let steps = if name == "mysql-check" {
                            super::super::happarse::mysql(&a[2..])
                        } else {
                            super::super::happarse::pgsql(&a[2..])
                        };
                        match steps {
                            Ok(s) => {
                                p.httpchk = None;
                                p.grpc_check = None;
                                p.hap_b.tcp_check = Some(s);
                                Ok(())
                            }
                            Err(m) => Err(e(self, format!("'option {name}': {m}"))),
                        }
                    }
                    "tcp-check" | "redis-check" | "ssl-hello-chk" | "persist" | "mysql-check"
                    | "pgsql-check" => not_here(self),
                    "smtpchk" | "ldap-check" | "spop-check"
                    | "external-check" => Err(e(
                        self,
                        format!("'option {name}' is not implemented (write it as 'option tcp-check' steps)"),
                    )),
                    "originalto" | "http_proxy" | "transparent" | "accept-invalid-http-request"
                    | "accept-invalid-http-response" | "http-restrict-req-hdr-names" => Err(e(
                        self,
                        format!("'option {name}' is not implemented"),
                    )),
                    _ => return None,
                }
            }
            "tcp-check" if back => {
                let steps = p.hap_b.tcp_check.get_or_insert_with(Vec::new);
                match super::super::happarse::step(&a[1..]) {
                    Ok(Some(s)) => {
                        steps.push(s);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(m) => Err(e(self, m)),
                }
            }
            "tcp-check" => not_here(self),
            "http-check" if back && a.get(1).is_some_and(|x| x == "send") => {
                match super::super::happarse::http_check_send(&a[2..]) {
                    Ok((meth, uri, hdrs)) => {
                        let h = p.httpchk.get_or_insert_with(|| super::HttpCheck {
                            method: "OPTIONS".into(),
                            uri: "/".into(),
                            expect_status: None,
                        });
                        if let Some(m) = meth {
                            h.method = m;
                        }
                        if let Some(u) = uri {
                            h.uri = u;
                        }
                        if !hdrs.is_empty() {
                            self.warn(d.line, "'http-check send ... hdr': lb's checks send Host: the server's address");
                        }
                        Ok(())
                    }
                    Err(m) => Err(e(self, m)),
                }
            }
            "compression" => {
                let mut c = p
                    .hap_b
                    .compression
                    .clone()
                    .or_else(|| p.hap_f.compression.clone())
                    .unwrap_or_default();
                if let Err(m) = super::super::haproxy_comp::parse(&mut c, &a[1..]) {
                    return Some(Err(e(self, m)));
                }
                if back {
                    p.hap_b.compression = Some(c.clone());
                }
                if front {
                    p.hap_f.compression = Some(c);
                }
                Ok(())
            }
            "errorfile" if front => match self.errorfile(&a[1..]) {
                Ok((code, body)) => {
                    p.hap_f.errorfiles.retain(|(c, _)| *c != code);
                    p.hap_f.errorfiles.push((code, body));
                    Ok(())
                }
                Err(m) => Err(e(self, m)),
            },
            "errorfiles" if front => {
                let Some(name) = a.get(1) else {
                    return Some(Err(e(self, "needs the name of an 'http-errors' section".into())));
                };
                let Some(files) = self.hap.http_errors.get(name).cloned() else {
                    return Some(Err(e(
                        self,
                        format!("no 'http-errors {name}' section before this line (lb needs it defined first)"),
                    )));
                };
                let mut codes = Vec::new();
                for c in &a[2..] {
                    match c.parse::<u16>() {
                        Ok(n) => codes.push(n),
                        Err(_) => return Some(Err(e(self, format!("invalid status '{c}'")))),
                    }
                }
                for (code, body) in files {
                    if codes.is_empty() || codes.contains(&code) {
                        p.hap_f.errorfiles.retain(|(c, _)| *c != code);
                        p.hap_f.errorfiles.push((code, body));
                    }
                }
                Ok(())
            }
            "errorfile" | "errorfiles" => Err(e(
                self,
                "in a backend is not implemented: put it in the frontend or defaults (it applies to every error lb answers there)".into(),
            )),
            "cookie" if back => match super::super::happarse::cookie(&a[1..], d.line) {
                Ok(c) => {
                    p.hap_b.cookie = Some(c);
                    Ok(())
                }
                Err(m) => Err(e(self, m)),
            },
            "cookie" => not_here(self),
            "stick-table" if mask != D => {
                match super::super::happarse::stick_table(&a[1..], d.line) {
                    Ok(t) => {
                        if back {
                            p.hap_b.stick_table = Some(t.clone());
                        }
                        if front {
                            p.hap_f.stick_table = Some(t);
                        }
                        Ok(())
                    }
                    Err(m) => Err(e(self, m)),
                }
            }
            "stick-table" => not_here(self),
            "stick" => Err(e(
                self,
                "'stick on|match|store' is not implemented (use 'cookie' for persistence, 'track-sc0' for counters)".into(),
            )),
            "http-response" | "http-after-response" if front => {
                let phase = if kw == "http-response" {
                    Phase::Response
                } else {
                    Phase::AfterResponse
                };
                match rules::parse(phase, a, d.line, &self.base()) {
                    Ok(r) => {
                        if let rules::Action::Ignored(why) = r.action {
                            self.warn(d.line, format!("'{kw} {}' has no effect in lb: {why}", a[1]));
                        }
                        if phase == Phase::Response {
                            p.hap_f.res_rules.push(r);
                        } else {
                            p.hap_f.after_rules.push(r);
                        }
                        Ok(())
                    }
                    Err(m) => Err(e(self, m)),
                }
            }
            "http-response" | "http-after-response" => Err(e(
                self,
                "response rules in a backend are not implemented (put them in the frontend)".into(),
            )),
            "redirect" if front => match rules::parse_redirect(a, d.line, &self.base()) {
                Ok(r) => {
                    p.rules.push(r);
                    Ok(())
                }
                Err(m) => Err(e(self, m)),
            },
            "monitor-uri" if front => match super::one_arg(a) {
                Ok(u) => {
                    p.hap_f.monitor_uri = Some(u.to_string());
                    Ok(())
                }
                Err(m) => Err(e(self, m)),
            },
            "stats" => {
                match a.get(1).map(String::as_str) {
                    Some("uri") if front => {
                        p.hap_f.stats_uri = a.get(2).cloned();
                        self.warn(d.line, "'stats uri': lb answers there with where its stats are (the admin listener's /stats); the page itself is on 'admin ADDR'");
                    }
                    Some("admin") => {
                        return Some(Err(e(self, "'stats admin' is not implemented: the admin listener's runtime API changes servers".into())))
                    }
                    _ => self.warn(d.line, format!("'{}' has no effect in lb: stats are on the admin listener", a.join(" "))),
                }
                Ok(())
            }
            "timeout" => match a.get(1).map(String::as_str) {
                Some("queue") if back => {
                    match a.get(2).map_or(Err("missing argument".into()), |v| parse::duration(v)) {
                        Ok(t) => {
                            p.hap_b.timeout_queue = Some(t);
                            Ok(())
                        }
                        Err(m) => Err(e(self, m)),
                    }
                }
                Some("queue") => {
                    self.warn(d.line, "'timeout queue' in a frontend has no effect (as in HAProxy): set it in the backend or defaults");
                    Ok(())
                }
                Some("tunnel") | Some("client-fin") | Some("server-fin") | Some("tarpit") => {
                    if let Err(m) = a.get(2).map_or(Err("missing argument".into()), |v| parse::duration(v)) {
                        return Some(Err(e(self, m)));
                    }
                    self.warn(d.line, format!("'timeout {}': lb applies 'timeout client' and 'timeout server' there", a[1]));
                    Ok(())
                }
                _ => return None,
            },
            "balance" => match a.get(1).map(String::as_str) {
                Some("static-rr") => {
                    p.balance = super::Balance::RoundRobin;
                    Ok(())
                }
                Some("first") if back => {
                    p.balance = super::Balance::First;
                    p.hap_b.hash_on = None;
                    Ok(())
                }
                Some(b) if ["hash", "rdp-cookie"].contains(&b) || b.starts_with("random(") => Err(e(
                    self,
                    format!("'balance {b}' is not implemented (roundrobin, static-rr, leastconn, source, random, first, uri, url_param, hdr(NAME))"),
                )),
                _ if back => match super::super::haproxy_hash::parse_balance(&a[1..]) {
                    Some(Ok(h)) => {
                        p.balance = super::Balance::Hash;
                        p.hap_b.hash_on = Some(h);
                        Ok(())
                    }
                    Some(Err(m)) => Err(e(self, m)),
                    None => {
                        p.hap_b.hash_on = None;
                        return None;
                    }
                },
                _ => return None,
            },
            "hash-type" if back => match super::super::haproxy_hash::parse_hash_type(&a[1..]) {
                Ok(t) => {
                    p.hap_b.hash_type = t;
                    Ok(())
                }
                Err(m) => Err(e(self, m)),
            },
            "bind" if front => {
                // lb's own parser reads what is left; see `hap_bind_args`.
                return None;
            }
            "server-template" if back => match super::super::haproxy_dns::template(&a[1..]) {
                Ok((names, fqdn, port)) => {
                    self.dns_server(mask, kind, d, p, names, fqdn, port, &a[4..])
                }
                Err(m) => Err(e(self, m)),
            },
            "server" if back && a.iter().skip(3).any(|x| x == "resolvers") => {
                let (Some(name), Some(target)) = (a.get(1), a.get(2)) else {
                    return None;
                };
                match super::super::haproxy_dns::target_of(target) {
                    Ok((fqdn, port)) => {
                        let names = vec![name.clone()];
                        self.dns_server(mask, kind, d, p, names, fqdn, port, &a[3..])
                    }
                    Err(m) => Err(e(self, m)),
                }
            }
            "dynamic-cookie-key" | "persist" | "ignore-persist" | "force-persist" => Err(e(
                self,
                format!("'{kw}' is not implemented"),
            )),
            _ => return None,
        })
    }

    /// Checks of a whole section that involve HAProxy settings.
    pub(super) fn hap_finish(&mut self, d: &Draft) {
        if d.hap_b.hash_on.is_some()
            && d.balance == super::Balance::Hash
            && d.mode == Mode::Tcp
            && !d.mode_unknown
            && !d.servers.is_empty()
        {
            let line = d.servers.first().map_or(0, |s| s.line);
            let e = self.err(
                line,
                "'balance uri', 'url_param' and 'hdr()' need 'mode http'",
            );
            self.errors.push(e);
        }
        if let Some(c) = &d.hap_b.cookie {
            if d.mode == Mode::Tcp && !d.mode_unknown {
                let e = self.err(c.line, "'cookie' needs 'mode http'");
                self.errors.push(e);
            }
        }
        for s in &d.servers {
            if s.opts.hap.send_proxy > 0 && s.opts.h2() && s.opts.tls.is_none() {
                // Fine: PROXY precedes the h2c preface.
            }
        }
        for r in d
            .rules
            .iter()
            .chain(&d.hap_f.res_rules)
            .chain(&d.hap_f.after_rules)
        {
            for x in r.exprs() {
                self.hap_check_table_fetch(r.line, &x.fetch, d);
            }
            if let Some(c) = &r.cond {
                for a in c.acls(&d.acls) {
                    if let super::super::acl::Criterion::Sample { expr, .. } = &a.criterion {
                        self.hap_check_table_fetch(r.line, &expr.fetch, d);
                    }
                }
            }
        }
        if d.hap_b.tcp_check.as_ref().is_some_and(Vec::is_empty)
            && d.servers.iter().any(|s| s.opts.check)
        {
            // `option tcp-check` alone: a connect check, as HAProxy.
        }
    }

    fn hap_check_table_fetch(&mut self, line: usize, f: &super::super::sample::Fetch, d: &Draft) {
        let super::super::sample::Fetch::Table(q) = f else {
            return;
        };
        if q.table.is_none() && q.key == TableKey::Src && d.hap_f.stick_table.is_none() {
            let e = self.err(
                line,
                format!(
                    "'src_{}' without a table name needs a 'stick-table' in this section",
                    q.data.name()
                ),
            );
            self.errors.push(e);
        }
        if let (None, Some(t)) = (&q.table, &d.hap_f.stick_table) {
            if !t.stores(q.data) {
                let e = self.err(
                    line,
                    format!(
                        "the stick-table of this section (line {}) does not store '{}'{}",
                        t.line,
                        q.data.name(),
                        did_you_mean(
                            q.data.name(),
                            &t.store.iter().map(|(d, _)| d.name()).collect::<Vec<_>>()
                        )
                    ),
                );
                self.errors.push(e);
            }
        }
    }
}
