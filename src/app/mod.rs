//! The foobar application (gunicorn's role): the JSON API over the kv tier, with read-your-writes through replication offsets.
//!
//! - `kvclient` pooled RESP2 client
//! - `follow`   the primary and replicas as sentinels tell them (`kv-sentinel`)
//! - `metrics`  `lb_app_*`: requests by endpoint, kv calls by role, read-your-writes fallbacks
//! - `server`   the app as an HTTP/1 service (`http::driver` runs the connection): bodies, framing

pub mod follow;
pub mod kvclient;
pub mod metrics;
pub mod server;

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conf::app::AppConf;
use crate::http::head::{HeadLimits, RequestHead};
use kvclient::{info_field, KvClient, KvError, Reply};
use metrics::{Fallback, Role};

/// One `app` section, ready to serve.
#[derive(Debug)]
pub struct App {
    pub conf: AppConf,
    /// Request head limits (global `tune.bufsize`, `tune.http.maxhdr`).
    pub limits: HeadLimits,
    pub primary: KvClient,
    pub replica: Option<KvClient>,
    /// With `kv-sentinel`: where the primary and replicas are now (then `primary`
    /// and `replica` only carry the timeout and pool settings).
    pub follower: Option<std::sync::Arc<follow::Follower>>,
    /// Requests answered, for `/api/whoami`.
    served: AtomicU64,
    /// Counters of this section (by name, kept across reloads).
    pub stats: std::sync::Arc<metrics::AppStats>,
}

/// A response before framing: status, extra header lines, JSON body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn error(status: u16, msg: &str) -> Response {
        let mut b = String::from("{\"error\":");
        json_str(&mut b, msg);
        b.push_str("}\n");
        Response::json(status, b)
    }

    fn kv_down(e: &KvError) -> Response {
        Response::error(503, &format!("kv tier unavailable: {e}"))
    }

    /// An error reply to a write: READONLY means the primary moved (a failover):
    /// 503 and the client may retry, never a success.
    fn write_refused(e: &str) -> Response {
        if e.starts_with("READONLY") {
            Response::error(503, &format!("kv primary moved (failover): {e}"))
        } else {
            Response::error(502, &format!("kv: {e}"))
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Appends `s` as a JSON string literal (RFC 8259 escaping; U+2028/2029 escaped too,
/// so the text is also valid JavaScript).
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Bytes as a JSON string; invalid UTF-8 becomes U+FFFD.
fn json_bytes(out: &mut String, b: &[u8]) {
    json_str(out, &String::from_utf8_lossy(b));
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a path segment or query value (`+` stays `+`); `None` on a bad escape.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let h = hex(*s.get(i + 1)?)?;
            let l = hex(*s.get(i + 2)?)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A malformed `X-Read-After` header (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X-Read-After must be a number")]
pub struct BadToken;

/// The read-your-writes token of a request: `X-Read-After: N`, else a `read_after=N` cookie.
/// `Err` for a malformed header (a bad cookie is ignored, as cookies are ambient).
pub fn read_after(req: &RequestHead) -> Result<Option<u64>, BadToken> {
    if let Some(v) = req.header("x-read-after") {
        return std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or(BadToken);
    }
    for h in &req.headers {
        if !req.slice(h.name).eq_ignore_ascii_case(b"cookie") {
            continue;
        }
        for pair in req.slice(h.value).split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(v) = pair.strip_prefix(b"read_after=") {
                if let Some(n) = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                    return Ok(Some(n));
                }
            }
        }
    }
    Ok(None)
}

/// Where a read was served, for the `x-kv-source` header.
const FROM_REPLICA: &str = "replica";
const FROM_PRIMARY: &str = "primary";
const FROM_PRIMARY_BEHIND: &str = "primary; replica behind";
const FROM_PRIMARY_DOWN: &str = "primary; replica unreachable";

impl App {
    pub fn new(conf: &AppConf, limits: HeadLimits) -> App {
        let client = |addr| KvClient {
            addr,
            timeout: conf.timeout_kv,
            pool: conf.kv_pool,
        };
        let stats = metrics::app(&conf.name);
        if let Ok(mut a) = stats.addrs.lock() {
            *a = metrics::AppAddrs {
                bind: Some(conf.bind),
                kv_primary: conf.kv_master_name.is_none().then_some(conf.kv_primary),
                kv_replica: conf.kv_replica,
            };
        }
        let follower = conf.kv_master_name.as_ref().map(|name| {
            follow::Follower::new(
                &conf.name,
                name,
                &conf.kv_sentinels,
                conf.timeout_kv,
                stats.clone(),
            )
        });
        App {
            conf: conf.clone(),
            limits,
            primary: client(conf.kv_primary),
            replica: conf.kv_replica.map(client),
            follower,
            served: AtomicU64::new(0),
            stats,
        }
    }

    /// This app's new configuration after a reload: its request count goes on
    /// from the old one's.
    pub fn reloaded(conf: &AppConf, limits: HeadLimits, old: &App) -> App {
        let app = App::new(conf, limits);
        app.served
            .store(old.served.load(Ordering::Relaxed), Ordering::Relaxed);
        app
    }

    /// One kv round trip to `role`, timed and counted.
    async fn call(&self, role: Role, cmds: &[&[&[u8]]]) -> Result<Vec<Reply>, KvError> {
        let start = std::time::Instant::now();
        let client = match self.client(role).await {
            Ok(c) => c,
            Err(e) => {
                self.stats.kv_call(role, false, start.elapsed());
                return Err(e);
            }
        };
        let client = &client;
        let r = client.call(cmds).await;
        if let Some(f) = &self.follower {
            // Refused, cut or READONLY: the primary may have moved; ask the sentinels now.
            let moved = r.as_ref().map_or(true, |v| {
                v.iter()
                    .any(|x| matches!(x, Reply::Error(e) if e.starts_with("READONLY")))
            });
            if moved {
                f.suspect();
            }
        }
        // An error reply (READONLY after a failover, OOM) is an error too.
        let ok = r
            .as_ref()
            .is_ok_and(|v| !v.iter().any(|x| matches!(x, Reply::Error(_))));
        self.stats.kv_call(role, ok, start.elapsed());
        // Reachability changes are logged once each: unreachable at warn, back at info.
        let was = self.stats.kv_reachable[role as usize].swap(r.is_ok(), Ordering::Relaxed);
        match (&r, was) {
            (Err(e), true) => tracing::warn!(
                "app {}: kv {} {} unreachable: {e}",
                self.conf.name,
                metrics::ROLES[role as usize],
                client.addr
            ),
            (Ok(_), false) => tracing::info!(
                "app {}: kv {} {} reachable again",
                self.conf.name,
                metrics::ROLES[role as usize],
                client.addr
            ),
            _ => {}
        }
        r
    }

    /// The client for `role` now: fixed addresses, or those the sentinels give.
    async fn client(&self, role: Role) -> Result<KvClient, KvError> {
        let Some(f) = &self.follower else {
            return Ok(match (role, &self.replica) {
                (Role::Replica, Some(r)) => r.clone(),
                _ => self.primary.clone(),
            });
        };
        let top = f.topology();
        let addr = match role {
            // Replicas in turn, so reads spread over them.
            Role::Replica if !top.replicas.is_empty() => {
                let i = self.served.load(Ordering::Relaxed) as usize % top.replicas.len();
                top.replicas[i]
            }
            _ => f.primary().await?,
        };
        Ok(KvClient {
            addr,
            ..self.primary.clone()
        })
    }

    /// Whether reads may go to a replica: `None` = no replica at all,
    /// `Some(false)` = replicas exist but none is usable now.
    fn has_replica(&self) -> Option<bool> {
        match &self.follower {
            Some(f) => {
                let t = f.topology();
                (!t.replicas.is_empty() || t.replicas_down > 0).then(|| !t.replicas.is_empty())
            }
            None => self.replica.is_some().then_some(true),
        }
    }

    /// Runs a read: on the replica when it is reachable and (with a token) has
    /// applied the primary's stream up to `after`, else on the primary.
    async fn read(
        &self,
        cmd: &[&[u8]],
        after: Option<u64>,
    ) -> Result<(Reply, &'static str), KvError> {
        let mut source = FROM_PRIMARY;
        if self.has_replica() == Some(false) {
            // The sentinels know replicas, none usable: the primary, without trying them.
            self.stats.fallback(Fallback::Unreachable);
            source = FROM_PRIMARY_DOWN;
        } else if self.has_replica() == Some(true) {
            let attempt = match after {
                // INFO and the read go in one batch, so the read sees at least the state INFO reports.
                Some(n) => self
                    .call(Role::Replica, &[&[b"INFO", b"replication"], cmd])
                    .await
                    .map(|mut r| {
                        let caught_up = match r.first() {
                            Some(Reply::Bulk(Some(info))) => {
                                info_field(info, "role") == Some(b"slave")
                                    && info_field(info, "slave_repl_offset")
                                        .and_then(|v| {
                                            std::str::from_utf8(v).ok()?.parse::<u64>().ok()
                                        })
                                        .is_some_and(|o| o >= n)
                            }
                            _ => false,
                        };
                        (caught_up && r.len() == 2).then(|| r.swap_remove(1))
                    }),
                None => self.call(Role::Replica, &[cmd]).await.map(|mut r| r.pop()),
            };
            match attempt {
                Ok(Some(r)) if !matches!(r, Reply::Error(_)) => return Ok((r, FROM_REPLICA)),
                Ok(_) => {
                    self.stats.fallback(Fallback::Behind);
                    source = FROM_PRIMARY_BEHIND
                }
                Err(e) => {
                    tracing::debug!("app {}: replica read failed: {e}", self.conf.name);
                    self.stats.fallback(Fallback::Unreachable);
                    source = FROM_PRIMARY_DOWN;
                }
            }
        }
        let mut r = self.call(Role::Primary, &[cmd]).await?;
        let reply = r.pop().ok_or(KvError::Protocol {
            addr: self.primary.addr,
            why: "missing reply",
        })?;
        Ok((reply, source))
    }

    /// Runs a write on the primary and returns its reply and the primary's
    /// replication offset right after it.
    async fn write(&self, cmd: &[&[u8]]) -> Result<(Reply, u64), KvError> {
        let bad = |why| KvError::Protocol {
            addr: self.primary.addr,
            why,
        };
        let mut r = self
            .call(Role::Primary, &[cmd, &[b"INFO", b"replication"]])
            .await?;
        let info = r.pop().ok_or(bad("missing reply"))?;
        let reply = r.pop().ok_or(bad("missing reply"))?;
        let offset = match &info {
            Reply::Bulk(Some(i)) => info_field(i, "master_repl_offset")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .ok_or(bad("INFO without master_repl_offset"))?,
            _ => return Err(bad("INFO did not answer a bulk string")),
        };
        Ok((reply, offset))
    }

    /// Answers one request. `body` is the complete request body.
    pub async fn handle(&self, req: &RequestHead, body: &[u8], peer: SocketAddr) -> Response {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let path = req.path();
        let method = req.method();
        let read_only = matches!(method, b"GET" | b"HEAD");
        let target = req.target();
        let query = target
            .iter()
            .position(|&b| b == b'?')
            .map_or(&b""[..], |i| &target[i + 1..]);
        match path {
            b"/healthz" => {
                if !read_only {
                    return Response::error(405, "method not allowed")
                        .header("allow", "GET, HEAD".into());
                }
                match self.call(Role::Primary, &[&[b"PING"]]).await {
                    Ok(_) => {
                        Response::json(200, "{\"status\":\"ok\",\"kv_primary\":\"up\"}\n".into())
                    }
                    Err(e) => {
                        let mut b = String::from("{\"status\":\"unavailable\",\"error\":");
                        json_str(&mut b, &e.to_string());
                        b.push_str("}\n");
                        Response::json(503, b)
                    }
                }
            }
            b"/api/whoami" => {
                if !read_only {
                    return Response::error(405, "method not allowed")
                        .header("allow", "GET, HEAD".into());
                }
                let mut b = String::with_capacity(256);
                b.push_str("{\"app\":");
                json_str(&mut b, &self.conf.name);
                let _ = write!(b, ",\"pid\":{}", std::process::id());
                b.push_str(",\"thread\":");
                json_str(&mut b, std::thread::current().name().unwrap_or("?"));
                b.push_str(",\"bind\":");
                json_str(&mut b, &self.conf.bind.to_string());
                b.push_str(",\"peer\":");
                json_str(&mut b, &peer.to_string());
                b.push_str(",\"forwarded_for\":");
                match req.header("x-forwarded-for") {
                    Some(v) => json_bytes(&mut b, v),
                    None => b.push_str("null"),
                }
                let _ = writeln!(b, ",\"requests\":{n}}}");
                Response::json(200, b).header("cache-control", "no-store".into())
            }
            b"/api/items" | b"/api/items/" => {
                if !read_only {
                    return Response::error(405, "method not allowed")
                        .header("allow", "GET, HEAD".into());
                }
                self.list(req, query).await
            }
            _ => match path.strip_prefix(b"/api/items/") {
                Some(raw) => self.item(req, raw, body).await,
                None => Response::error(404, "no such endpoint"),
            },
        }
    }

    async fn list(&self, req: &RequestHead, query: &[u8]) -> Response {
        let mut cursor: u64 = 0;
        let mut count: u64 = 100;
        for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let num = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            match (k, num) {
                (b"cursor", Some(c)) => cursor = c,
                (b"count", Some(c)) if (1..=1000).contains(&c) => count = c,
                (b"cursor", None) => return Response::error(400, "cursor must be a number"),
                (b"count", _) => return Response::error(400, "count must be 1 to 1000"),
                _ => {}
            }
        }
        let Ok(after) = read_after(req) else {
            return Response::error(400, "X-Read-After must be a number");
        };
        let (c, n) = (cursor.to_string(), count.to_string());
        let cmd: [&[u8]; 4] = [b"SCAN", c.as_bytes(), b"COUNT", n.as_bytes()];
        let (reply, source) = match self.read(&cmd, after).await {
            Ok(x) => x,
            Err(e) => return Response::kv_down(&e),
        };
        let Reply::Array(Some(parts)) = reply else {
            return Response::error(502, "kv answered SCAN with an unexpected reply");
        };
        let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(keys)))) =
            (parts.first(), parts.get(1))
        else {
            return Response::error(502, "kv answered SCAN with an unexpected reply");
        };
        let mut b = String::from("{\"keys\":[");
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            if let Reply::Bulk(Some(k)) = k {
                json_bytes(&mut b, k);
            }
        }
        b.push_str("],\"next\":");
        if next.as_slice() == b"0" {
            b.push_str("null");
        } else {
            json_bytes(&mut b, next);
        }
        b.push_str("}\n");
        Response::json(200, b).header("x-kv-source", source.into())
    }

    async fn item(&self, req: &RequestHead, raw: &[u8], body: &[u8]) -> Response {
        let Some(key) = percent_decode(raw) else {
            return Response::error(400, "bad percent-encoding in key");
        };
        if key.is_empty() {
            return Response::error(400, "empty key");
        }
        if key.len() > self.conf.max_key_bytes {
            return Response::error(
                400,
                &format!("key longer than {} bytes", self.conf.max_key_bytes),
            );
        }
        let mut kj = String::with_capacity(key.len() + 2);
        json_bytes(&mut kj, &key);
        match req.method() {
            b"GET" | b"HEAD" => {
                let Ok(after) = read_after(req) else {
                    return Response::error(400, "X-Read-After must be a number");
                };
                match self.read(&[b"GET", &key], after).await {
                    Ok((Reply::Bulk(Some(v)), source)) => {
                        let mut b = String::with_capacity(v.len() + kj.len() + 24);
                        let _ = write!(b, "{{\"key\":{kj},\"value\":");
                        json_bytes(&mut b, &v);
                        b.push_str("}\n");
                        Response::json(200, b).header("x-kv-source", source.into())
                    }
                    Ok((Reply::Bulk(None), source)) => {
                        Response::error(404, "no such key").header("x-kv-source", source.into())
                    }
                    Ok((Reply::Error(e), _)) => Response::error(502, &format!("kv: {e}")),
                    Ok(_) => Response::error(502, "kv answered GET with an unexpected reply"),
                    Err(e) => Response::kv_down(&e),
                }
            }
            b"PUT" => match self.write(&[b"SET", &key, body]).await {
                Ok((Reply::Status(_), off)) => written(200, &kj, off, "\"stored\":true"),
                Ok((Reply::Error(e), _)) if e.starts_with("OOM") => {
                    Response::error(507, &format!("kv: {e}"))
                }
                Ok((Reply::Error(e), _)) => Response::write_refused(&e),
                Ok(_) => Response::error(502, "kv answered SET with an unexpected reply"),
                Err(e) => Response::kv_down(&e),
            },
            b"DELETE" => match self.write(&[b"DEL", &key]).await {
                Ok((Reply::Int(1), off)) => written(200, &kj, off, "\"deleted\":true"),
                Ok((Reply::Int(_), off)) => {
                    let mut r = Response::error(404, "no such key");
                    r.headers = written(404, &kj, off, "").headers;
                    r
                }
                Ok((Reply::Error(e), _)) => Response::write_refused(&e),
                Ok(_) => Response::error(502, "kv answered DEL with an unexpected reply"),
                Err(e) => Response::kv_down(&e),
            },
            _ => Response::error(405, "method not allowed")
                .header("allow", "GET, HEAD, PUT, DELETE".into()),
        }
    }
}

/// The answer to a write: the offset in the body, in `X-Write-Offset`, and in a
/// `read_after` cookie that later reads send back.
fn written(status: u16, key_json: &str, offset: u64, what: &str) -> Response {
    let body = format!("{{\"key\":{key_json},{what},\"offset\":{offset}}}\n");
    Response::json(status, body)
        .header("x-write-offset", offset.to_string())
        .header(
            "set-cookie",
            format!("read_after={offset}; Path=/; Max-Age=300; SameSite=Lax"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}e\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001e\u2028é""#);
        s.clear();
        json_bytes(&mut s, b"ok\xff");
        assert_eq!(s, "\"ok\u{fffd}\"");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%2Fc").unwrap(), b"a b/c");
        assert_eq!(percent_decode(b"plain+").unwrap(), b"plain+");
        assert!(percent_decode(b"bad%2").is_none());
        assert!(percent_decode(b"bad%zz").is_none());
    }

    fn req(raw: &str) -> RequestHead {
        let mut b = bytes::BytesMut::from(raw.as_bytes());
        crate::http::head::parse_request(&mut b, &Default::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn read_after_from_header_or_cookie() {
        assert_eq!(
            read_after(&req("GET / HTTP/1.1\r\nHost: a\r\n\r\n")),
            Ok(None)
        );
        assert_eq!(
            read_after(&req(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Read-After: 42\r\n\r\n"
            )),
            Ok(Some(42))
        );
        assert_eq!(
            read_after(&req("GET / HTTP/1.1\r\nHost: a\r\nX-Read-After: x\r\n\r\n")),
            Err(BadToken)
        );
        assert_eq!(
            read_after(&req(
                "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; read_after=7; b=2\r\n\r\n"
            )),
            Ok(Some(7))
        );
        assert_eq!(
            read_after(&req(
                "GET / HTTP/1.1\r\nHost: a\r\nCookie: read_after=zz\r\n\r\n"
            )),
            Ok(None)
        );
    }
}
