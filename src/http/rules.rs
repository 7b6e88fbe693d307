//! The rules phase of an exchange: `http-request` rules (header edits, path,
//! return, deny, redirect, set-var, track-sc), `monitor-uri`, `stats uri`,
//! cookie persistence, and on the way back `http-response` and
//! `http-after-response` rules. Edits are made on a working copy of the head
//! that later rules see; a head that changed is written out and parsed again,
//! so the phases after this one get a head like any other.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::conn::{Conn, Fail};
use super::downstream::Answer;
use super::head::{self, HeadLimits, RequestHead, ResponseHead, TargetForm};
use super::rewrite::redirect_location;
use crate::conf::acl::Acl;
use crate::conf::rules::{Action, HttpRule, RedirectKind};
use crate::conf::sample::{TableKey, TableOp, TableQuery, Txn, Vars};
use crate::conf::{CookieConf, CookieMode};
use crate::snapshot::{BackendRt, FrontendRt};
use crate::stick;

/// What one exchange carries between its rules: variables and tracked entries.
#[derive(Default)]
pub(crate) struct TxnState {
    pub vars: Vars,
    /// `track-scN`: the table and key of each counter.
    tracked: [Option<(Arc<stick::Table>, Vec<u8>)>; 3],
    /// The server the persistence cookie named (index in the backend).
    pub cookie_server: Option<usize>,
}

impl Drop for TxnState {
    fn drop(&mut self) {
        for (t, k) in self.tracked.iter().flatten() {
            t.untrack(k);
        }
    }
}

impl TxnState {
    /// A response status to count in `http_err_rate` of tracked entries.
    pub(crate) fn saw_status(&self, status: u16) {
        if status >= 400 {
            for (t, k) in self.tracked.iter().flatten() {
                t.error(k);
            }
        }
    }
}

/// A head being edited: what the rules see and change.
struct Work<'a> {
    method: Vec<u8>,
    target: Vec<u8>,
    minor: u8,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Response: status, reason, and its own header list.
    status: Option<u16>,
    reason: Vec<u8>,
    res_headers: Vec<(Vec<u8>, Vec<u8>)>,
    conn: &'a Conn<'a>,
    dst: Option<SocketAddr>,
    vars: Vars,
    tracked: Tracked,
    dirty: bool,
}

fn find<'h>(hs: &'h [(Vec<u8>, Vec<u8>)], name: &str) -> impl Iterator<Item = &'h [u8]> + 'h {
    let name = name.to_ascii_lowercase();
    hs.iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

impl Txn for Work<'_> {
    fn path(&self) -> &[u8] {
        let t = &self.target[..];
        let t = match t.windows(3).position(|w| w == b"://") {
            Some(i) => {
                let rest = &t[i + 3..];
                match rest.iter().position(|&b| b == b'/') {
                    Some(j) => &rest[j..],
                    None => b"/",
                }
            }
            None => t,
        };
        match t.iter().position(|&b| b == b'?') {
            Some(i) => &t[..i],
            None => t,
        }
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        find(&self.headers, name).next()
    }
    fn headers(&self, name: &str) -> Vec<&[u8]> {
        find(&self.headers, name).collect()
    }
    fn ssl(&self) -> bool {
        self.conn.proto == "https"
    }
    fn src(&self) -> Option<IpAddr> {
        Some(self.conn.peer.ip())
    }
    fn src_port(&self) -> Option<u16> {
        Some(self.conn.peer.port())
    }
    fn dst(&self) -> Option<SocketAddr> {
        self.dst
    }
    fn sni(&self) -> Option<&[u8]> {
        // rustls checked the SNI against the certificates; the Host the
        // client sent over that connection names the same site.
        self.ssl()
            .then(|| self.header("host").map(crate::conf::acl::strip_port))
            .flatten()
    }
    fn client_cert(&self) -> Option<&crate::conf::sample::ClientCert> {
        self.conn.client_cert.as_deref()
    }
    fn method(&self) -> &[u8] {
        &self.method
    }
    fn url(&self) -> &[u8] {
        &self.target
    }
    fn version(&self) -> &[u8] {
        match (self.conn.version, self.minor) {
            (super::conn::Version::Http2, _) => b"2.0",
            (_, 0) => b"1.0",
            _ => b"1.1",
        }
    }
    fn status(&self) -> Option<u16> {
        self.status
    }
    fn res_headers(&self, name: &str) -> Vec<&[u8]> {
        find(&self.res_headers, name).collect()
    }
    fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.vars.0.get(name).cloned()
    }
    fn table(&self, q: &TableQuery) -> Option<i64> {
        table_query(self.conn, &self.tracked, q)
    }
}

/// A stick-table fetch: the entry a `track-scN` holds, or the client's.
fn table_query(conn: &Conn<'_>, tracked: &Tracked, q: &TableQuery) -> Option<i64> {
    let (table, key) = match &q.key {
        TableKey::Counter(n) => {
            let (t, k) = tracked.get(*n as usize)?.as_ref()?;
            let t = match &q.table {
                Some(name) => stick::lookup(name)?,
                None => t.clone(),
            };
            (t, k.clone())
        }
        TableKey::Src => {
            let name = q.table.as_deref().unwrap_or(&conn.fe.conf.name);
            (stick::lookup(name)?, key_of_ip(conn.peer.ip()))
        }
    };
    Some(table.query(&key, q.data, q.op))
}

impl TxnState {
    /// Variables and stick-table counters, for conditions outside the rules
    /// (`use_backend`).
    pub(crate) fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.vars.0.get(name).cloned()
    }

    pub(crate) fn table(&self, conn: &Conn<'_>, q: &TableQuery) -> Option<i64> {
        table_query(conn, &self.tracked, q)
    }
}

/// An address as a table key: IPv4-mapped IPv6 addresses as IPv4, as HAProxy.
fn key_of_ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string().into_bytes(),
            None => v6.to_string().into_bytes(),
        },
        IpAddr::V4(v4) => v4.to_string().into_bytes(),
    }
}

/// The address the client reached: the frontend's bind of the same kind
/// (TLS or not), as lb does not keep each connection's local address here.
fn bind_addr_of(fe: &FrontendRt, tls: bool) -> Option<SocketAddr> {
    let i = fe.conf.binds.iter().position(|b| b.tls.is_some() == tls)?;
    fe.bound.get(i).copied()
}

fn set_header(hs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: &str, value: Vec<u8>, replace: bool) {
    if replace {
        hs.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
    }
    hs.push((name.as_bytes().to_vec(), value));
}

/// The address the client reached, as a PROXY header to a server states it.
pub(crate) fn local_addr(conn: &Conn<'_>) -> SocketAddr {
    bind_addr_of(conn.fe, conn.proto == "https")
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// What the request rules decided.
pub(crate) enum Verdict {
    /// Go on, with a rewritten head when a rule changed it.
    Pass(Option<RequestHead>),
    /// lb answers itself.
    Answer(Answer),
}

fn cond_holds(r: &HttpRule, acls: &[Acl], w: &dyn Txn) -> bool {
    r.cond.as_ref().is_none_or(|c| c.eval(acls, w))
}

impl<'a> Work<'a> {
    fn of_request(req: &RequestHead, conn: &'a Conn<'a>, vars: Vars, tracked: Tracked) -> Work<'a> {
        Work {
            method: req.method().to_vec(),
            target: req.target().to_vec(),
            minor: req.minor_version,
            headers: req
                .headers
                .iter()
                .map(|h| (req.slice(h.name).to_vec(), req.slice(h.value).to_vec()))
                .collect(),
            status: None,
            reason: Vec::new(),
            res_headers: Vec::new(),
            dst: bind_addr_of(conn.fe, conn.proto == "https"),
            conn,
            vars,
            tracked,
            dirty: false,
        }
    }

    /// The request head as written out again, parsed.
    fn request(&self, limits: &HeadLimits) -> Result<RequestHead, Fail> {
        let mut b = BytesMut::with_capacity(256);
        b.put_slice(&self.method);
        b.put_u8(b' ');
        b.put_slice(&self.target);
        b.put_slice(if self.minor == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        for (n, v) in &self.headers {
            b.put_slice(n);
            b.put_slice(b": ");
            b.put_slice(v);
            b.put_slice(b"\r\n");
        }
        b.put_slice(b"\r\n");
        // Rules may add a few headers past the client's limit.
        let lim = HeadLimits {
            max_bytes: limits.max_bytes * 2,
            max_headers: limits.max_headers * 2,
        };
        match head::parse_request(&mut b, &lim) {
            Ok(Some(h)) => Ok(h),
            Ok(None) | Err(_) => {
                tracing::warn!("http-request rules made an invalid request head");
                Err(Fail::Status(500))
            }
        }
    }
}

/// `http-request` rules in order, with `monitor-uri` and `stats uri` first.
pub(crate) fn apply_request(
    conn: &Conn<'_>,
    req: &RequestHead,
    st: &mut TxnState,
) -> Result<Verdict, Fail> {
    let fe = conn.fe;
    let hap = &fe.conf.hap;
    if let Some(u) = &hap.monitor_uri {
        if req.path() == u.as_bytes() {
            return Ok(Verdict::Answer(Answer::Full {
                status: 200,
                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                body: b"OK\n".to_vec(),
            }));
        }
    }
    if let Some(u) = &hap.stats_uri {
        if req.path() == u.as_bytes() {
            return Ok(Verdict::Answer(Answer::Full {
                status: 200,
                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                body: b"lb serves its stats on the admin listener (global 'admin ADDR'): /stats, /stats.json, /metrics\n".to_vec(),
            }));
        }
    }
    let rules = &fe.conf.http.rules;
    if rules.is_empty() {
        return Ok(Verdict::Pass(None));
    }
    let acls = &fe.conf.http.acls;
    let vars = std::mem::take(&mut st.vars);
    let tracked = std::mem::take(&mut st.tracked);
    let mut w = Work::of_request(req, conn, vars, tracked);
    let mut out = None;
    for r in rules {
        if !cond_holds(r, acls, &w) {
            continue;
        }
        match act(r, &mut w, conn) {
            Ok(Step::Next) => {}
            Ok(Step::Stop) => break,
            Ok(Step::Answer(a)) => {
                out = Some(a);
                break;
            }
            Err(f) => {
                st.vars = std::mem::take(&mut w.vars);
                st.tracked = std::mem::take(&mut w.tracked);
                return Err(f);
            }
        }
    }
    st.vars = std::mem::take(&mut w.vars);
    st.tracked = std::mem::take(&mut w.tracked);
    if let Some(a) = out {
        return Ok(Verdict::Answer(a));
    }
    if w.dirty {
        return Ok(Verdict::Pass(Some(w.request(&conn.limits)?)));
    }
    Ok(Verdict::Pass(None))
}

enum Step {
    Next,
    Stop,
    Answer(Answer),
}

type Tracked = [Option<(Arc<stick::Table>, Vec<u8>)>; 3];

fn act(r: &HttpRule, w: &mut Work<'_>, conn: &Conn<'_>) -> Result<Step, Fail> {
    let fe = conn.fe;
    Ok(match &r.action {
        Action::Allow => Step::Stop,
        Action::Deny { status } => {
            fe.stats.denied.req_rule.inc();
            Step::Answer(Answer::Error {
                status: *status,
                extra: Vec::new(),
            })
        }
        Action::Return {
            status,
            content_type,
            body,
            headers,
        } => {
            let mut hs: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(ct) = content_type {
                hs.push(("content-type".into(), ct.as_bytes().to_vec()));
            }
            for (n, v) in headers {
                hs.push((n.clone(), v.render(w)));
            }
            let body = body.as_ref().map(|b| b.render(w)).unwrap_or_default();
            Step::Answer(Answer::Full {
                status: *status,
                headers: hs,
                body,
            })
        }
        Action::Redirect {
            kind,
            to,
            code,
            drop_query,
        } => {
            let location = match kind {
                RedirectKind::Scheme => {
                    // The original request head: scheme redirects keep host and target.
                    let scheme = String::from_utf8_lossy(&to.render(w)).into_owned();
                    let mut b = BytesMut::new();
                    b.put_slice(&w.method);
                    b.put_u8(b' ');
                    b.put_slice(&w.target);
                    b.put_slice(b" HTTP/1.1\r\n");
                    for (n, v) in &w.headers {
                        b.put_slice(n);
                        b.put_slice(b": ");
                        b.put_slice(v);
                        b.put_slice(b"\r\n");
                    }
                    b.put_slice(b"\r\n");
                    let lim = HeadLimits {
                        max_bytes: usize::MAX / 4,
                        max_headers: 10_000,
                    };
                    match head::parse_request(&mut b, &lim) {
                        Ok(Some(h)) => redirect_location(fe, &h, &scheme),
                        _ => return Err(Fail::Status(400)),
                    }
                }
                RedirectKind::Location => to.render(w),
                RedirectKind::Prefix => {
                    let mut l = to.render(w);
                    if l.ends_with(b"/") {
                        l.pop();
                    }
                    let t = if *drop_query {
                        w.path().to_vec()
                    } else {
                        let p = w.path();
                        let u = w.url();
                        let start = u.windows(p.len().max(1)).position(|x| x == p).unwrap_or(0);
                        u[start..].to_vec()
                    };
                    l.extend_from_slice(&t);
                    l
                }
            };
            let location = if *drop_query && *kind == RedirectKind::Scheme {
                match location.iter().position(|&b| b == b'?') {
                    Some(i) => location[..i].to_vec(),
                    None => location,
                }
            } else {
                location
            };
            Step::Answer(Answer::Redirect {
                code: *code,
                location,
            })
        }
        Action::SetHeader(n, v) | Action::AddHeader(n, v) => {
            let val = v.render(w);
            let replace = matches!(r.action, Action::SetHeader(..));
            set_header(&mut w.headers, n, val, replace);
            w.dirty = true;
            Step::Next
        }
        Action::DelHeader(n) => {
            w.headers
                .retain(|(h, _)| !h.eq_ignore_ascii_case(n.as_bytes()));
            w.dirty = true;
            Step::Next
        }
        Action::ReplaceHeader {
            name,
            re,
            with,
            each_value,
        } => {
            let fmt = with.render(w);
            let fmt = String::from_utf8_lossy(&fmt).into_owned();
            for (n, v) in w.headers.iter_mut() {
                if !n.eq_ignore_ascii_case(name.as_bytes()) {
                    continue;
                }
                *v = replace_value(&re.0, v, &fmt, *each_value);
            }
            w.dirty = true;
            Step::Next
        }
        Action::SetPath(v) => {
            let p = v.render(w);
            let q = w
                .target
                .iter()
                .position(|&b| b == b'?')
                .map(|i| w.target[i..].to_vec())
                .unwrap_or_default();
            let mut t = p;
            t.extend_from_slice(&q);
            w.target = t;
            w.dirty = true;
            Step::Next
        }
        Action::SetUri(v) => {
            w.target = v.render(w);
            w.dirty = true;
            Step::Next
        }
        Action::SetQuery(v) => {
            let q = v.render(w);
            let mut t = w.path().to_vec();
            if !q.is_empty() {
                t.push(b'?');
                t.extend_from_slice(&q);
            }
            w.target = t;
            w.dirty = true;
            Step::Next
        }
        Action::SetMethod(v) => {
            w.method = v.render(w);
            w.dirty = true;
            Step::Next
        }
        Action::SetStatus { .. } | Action::Ignored(_) => Step::Next,
        Action::SetVar(name, e) => {
            if let Some(v) = e.eval(w).map(|v| v.bytes().into_owned()) {
                w.vars.0.insert(name.clone(), v);
            }
            Step::Next
        }
        Action::UnsetVar(name) => {
            w.vars.0.remove(name);
            Step::Next
        }
        Action::TrackSc { n, key, table } => {
            if w.tracked[*n as usize].is_none() {
                let name = table.as_deref().unwrap_or(&fe.conf.name);
                let key = match &key.fetch {
                    crate::conf::sample::Fetch::Src if key.convs.is_empty() => {
                        Some(key_of_ip(conn.peer.ip()))
                    }
                    _ => key.eval(w).map(|v| v.bytes().into_owned()),
                };
                if let (Some(t), Some(k)) = (stick::lookup(name), key) {
                    t.track(&k);
                    w.tracked[*n as usize] = Some((t, k));
                }
            }
            Step::Next
        }
        Action::IncGpc0(n) => {
            if let Some((t, k)) = &w.tracked[*n as usize] {
                t.query(k, crate::conf::sample::TableData::Gpc0, TableOp::Inc);
            }
            Step::Next
        }
    })
}

/// `replace-header`/`replace-value`: `fmt` with `\1`-style groups (written `$1`).
fn replace_value(re: &regex::bytes::Regex, v: &[u8], fmt: &str, each: bool) -> Vec<u8> {
    let one = |item: &[u8]| -> Vec<u8> {
        match re.captures(item) {
            Some(c) => {
                let mut out = Vec::new();
                c.expand(fmt.as_bytes(), &mut out);
                out
            }
            None => item.to_vec(),
        }
    };
    if !each {
        return one(v);
    }
    let items: Vec<Vec<u8>> = v
        .split(|&b| b == b',')
        .map(|i| one(i.trim_ascii()))
        .collect();
    items.join(&b", "[..])
}

/// Persistence: the server a request's cookie names (`cookie NAME ...` on the
/// backend, `cookie VALUE` on its servers), and the request without lb's
/// cookie when the backend says `indirect`.
pub(crate) fn cookie_request(
    be: &BackendRt,
    req: &RequestHead,
    conn: &Conn<'_>,
    st: &mut TxnState,
) -> Result<Option<RequestHead>, Fail> {
    let Some(c) = &be.conf.hap.cookie else {
        return Ok(None);
    };
    let mut found = None;
    for v in req.header_values("cookie") {
        for pair in v.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(val) = pair
                .strip_prefix(c.name.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                found = Some(val.to_vec());
            }
        }
    }
    let Some(mut val) = found else {
        return Ok(None);
    };
    // `prefix`: the server's cookie is "SERVER~VALUE"; the server sees VALUE.
    let prefixed = c.mode == CookieMode::Prefix;
    if prefixed {
        let Some(i) = val.iter().position(|&b| b == b'~') else {
            return Ok(None);
        };
        val.truncate(i);
    }
    st.cookie_server = be
        .conf
        .servers
        .iter()
        .position(|s| s.opts.hap.cookie.as_deref().map(str::as_bytes) == Some(&val[..]));
    if !(prefixed || c.indirect && c.mode == CookieMode::Insert) {
        return Ok(None);
    }
    // The server does not see lb's cookie (or, with `prefix`, lb's part of it).
    let mut w = Work::of_request(req, conn, Vars::default(), Default::default());
    for (n, v) in w.headers.iter_mut() {
        if !n.eq_ignore_ascii_case(b"cookie") {
            continue;
        }
        if prefixed {
            let pairs: Vec<Vec<u8>> = v
                .split(|&b| b == b';')
                .map(<[u8]>::trim_ascii)
                .map(|p| match p.strip_prefix(c.name.as_bytes()) {
                    Some(r) if r.first() == Some(&b'=') => {
                        let r = &r[1..];
                        let rest = r.iter().position(|&b| b == b'~').map_or(r, |i| &r[i + 1..]);
                        [c.name.as_bytes(), b"=", rest].concat()
                    }
                    _ => p.to_vec(),
                })
                .collect();
            *v = pairs.join(&b"; "[..]);
            continue;
        }
        let kept: Vec<&[u8]> = v
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.starts_with(c.name.as_bytes()) || p.get(c.name.len()) != Some(&b'='))
            .collect();
        *v = kept.join(&b"; "[..]);
    }
    w.headers
        .retain(|(n, v)| !(n.eq_ignore_ascii_case(b"cookie") && v.is_empty()));
    w.dirty = true;
    w.request(&conn.limits).map(Some)
}

/// `http-response` rules, cookie insertion, then `http-after-response` rules;
/// `Err(status)` when a rule denies the response.
pub(crate) fn apply_response(
    conn: &Conn<'_>,
    req: &RequestHead,
    resp: ResponseHead,
    be: &BackendRt,
    server: Option<&Arc<crate::balance::Server>>,
    st: &TxnState,
) -> Result<ResponseHead, Fail> {
    let fe = conn.fe;
    let hap = &fe.conf.hap;
    st.saw_status(resp.status);
    let cookie = be.conf.hap.cookie.as_ref().and_then(|c| {
        let i = be
            .pool
            .servers
            .iter()
            .position(|s| server.is_some_and(|x| Arc::ptr_eq(s, x)))?;
        let value = be.conf.servers.get(i)?.opts.hap.cookie.clone()?;
        // The client already carries this server's cookie: nothing to set.
        (st.cookie_server != Some(i) || c.mode != CookieMode::Insert).then_some((c, value))
    });
    if hap.res_rules.is_empty() && hap.after_rules.is_empty() && cookie.is_none() {
        return Ok(resp);
    }
    let mut w = Work::of_request(req, conn, st.vars.clone(), st.tracked.clone());
    w.status = Some(resp.status);
    w.reason = resp.slice(resp.reason).to_vec();
    w.res_headers = resp
        .headers
        .iter()
        .map(|h| (resp.slice(h.name).to_vec(), resp.slice(h.value).to_vec()))
        .collect();
    let acls = &fe.conf.http.acls;
    for r in &hap.res_rules {
        if !cond_holds(r, acls, &w) {
            continue;
        }
        if !res_act(r, &mut w)? {
            break;
        }
    }
    if let Some((c, value)) = cookie {
        set_cookie(&mut w, c, &value);
    }
    for r in &hap.after_rules {
        if !cond_holds(r, acls, &w) {
            continue;
        }
        if !res_act(r, &mut w)? {
            break;
        }
    }
    if !w.dirty {
        return Ok(resp);
    }
    let mut b = BytesMut::with_capacity(resp.buf.len() + 128);
    b.put_slice(format!("HTTP/1.{} ", resp.minor_version).as_bytes());
    b.put_slice(w.status.unwrap_or(resp.status).to_string().as_bytes());
    b.put_u8(b' ');
    b.put_slice(&w.reason);
    b.put_slice(b"\r\n");
    for (n, v) in &w.res_headers {
        b.put_slice(n);
        b.put_slice(b": ");
        b.put_slice(v);
        b.put_slice(b"\r\n");
    }
    b.put_slice(b"\r\n");
    let lim = HeadLimits {
        max_bytes: conn.limits.max_bytes * 2,
        max_headers: conn.limits.max_headers * 2,
    };
    match head::parse_response_for(&mut b, &lim, req.method()) {
        Ok(Some(h)) => Ok(h),
        _ => {
            tracing::warn!("http-response rules made an invalid response head");
            Err(Fail::Status(502))
        }
    }
}

/// One response rule; `false` stops the list.
fn res_act(r: &HttpRule, w: &mut Work<'_>) -> Result<bool, Fail> {
    match &r.action {
        Action::Allow => return Ok(false),
        Action::Deny { status } => return Err(Fail::Status(*status)),
        Action::SetHeader(n, v) | Action::AddHeader(n, v) => {
            let val = v.render(w);
            let replace = matches!(r.action, Action::SetHeader(..));
            set_header(&mut w.res_headers, n, val, replace);
        }
        Action::DelHeader(n) => w
            .res_headers
            .retain(|(h, _)| !h.eq_ignore_ascii_case(n.as_bytes())),
        Action::ReplaceHeader {
            name,
            re,
            with,
            each_value,
        } => {
            let fmt = String::from_utf8_lossy(&with.render(w)).into_owned();
            for (n, v) in w.res_headers.iter_mut() {
                if n.eq_ignore_ascii_case(name.as_bytes()) {
                    *v = replace_value(&re.0, v, &fmt, *each_value);
                }
            }
        }
        Action::SetStatus { status, reason } => {
            w.status = Some(*status);
            w.reason = reason
                .clone()
                .unwrap_or_else(|| super::reply::reason(*status).to_string())
                .into_bytes();
        }
        // Variables and the rest have no response-side effect lb implements.
        _ => return Ok(true),
    }
    w.dirty = true;
    Ok(true)
}

/// `Set-Cookie` for the server that answered (insert), or the server's own
/// cookie given its value (rewrite).
fn set_cookie(w: &mut Work<'_>, c: &CookieConf, value: &str) {
    let ours = |v: &[u8]| v.starts_with(c.name.as_bytes()) && v.get(c.name.len()) == Some(&b'=');
    match c.mode {
        CookieMode::Rewrite => {
            for (n, v) in w.res_headers.iter_mut() {
                if n.eq_ignore_ascii_case(b"set-cookie") && ours(v) {
                    let rest = v
                        .iter()
                        .position(|&b| b == b';')
                        .map(|i| v[i..].to_vec())
                        .unwrap_or_default();
                    let mut nv = format!("{}={value}", c.name).into_bytes();
                    nv.extend_from_slice(&rest);
                    *v = nv;
                    w.dirty = true;
                }
            }
        }
        CookieMode::Prefix => {
            for (n, v) in w.res_headers.iter_mut() {
                if n.eq_ignore_ascii_case(b"set-cookie") && ours(v) {
                    let mut nv = format!("{}={value}~", c.name).into_bytes();
                    nv.extend_from_slice(&v[c.name.len() + 1..]);
                    *v = nv;
                    w.dirty = true;
                }
            }
        }
        CookieMode::Insert => {
            if c.preserve && find(&w.res_headers, "set-cookie").any(ours) {
                return;
            }
            w.res_headers
                .retain(|(n, v)| !(n.eq_ignore_ascii_case(b"set-cookie") && ours(v)));
            let mut v = format!("{}={value}; path=/", c.name);
            for d in &c.domain {
                v.push_str(&format!("; domain={d}"));
            }
            if let Some(m) = c.maxage {
                v.push_str(&format!("; Max-Age={}", m.as_secs()));
            }
            if c.httponly {
                v.push_str("; HttpOnly");
            }
            if c.secure {
                v.push_str("; Secure");
            }
            for a in &c.attrs {
                v.push_str(&format!("; {a}"));
            }
            w.res_headers.push((b"Set-Cookie".to_vec(), v.into_bytes()));
            // As HAProxy: a response a cache could keep is marked private,
            // so that no cache hands this client's cookie to others.
            if c.nocache && cacheable(&w.res_headers) {
                w.res_headers
                    .push((b"Cache-Control".to_vec(), b"private".to_vec()));
            }
            w.dirty = true;
        }
    }
}

/// The response says a shared cache may keep it (explicit freshness, no
/// `private`/`no-cache`/`no-store`).
fn cacheable(hs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let cc: Vec<u8> = find(hs, "cache-control")
        .flat_map(|v| v.to_ascii_lowercase())
        .collect();
    let has = |w: &[u8]| cc.windows(w.len()).any(|x| x == w);
    if has(b"private") || has(b"no-cache") || has(b"no-store") {
        return false;
    }
    has(b"max-age") || has(b"public") || find(hs, "expires").next().is_some()
}

/// The index of the server the cookie named, if it may take the request:
/// up, or down under `option persist`.
pub(crate) fn cookie_preference(
    be: &BackendRt,
    st: &TxnState,
) -> Option<Arc<crate::balance::Server>> {
    let i = st.cookie_server?;
    let s = be.pool.servers.get(i)?;
    (s.eligible() || be.conf.hap.persist).then(|| s.clone())
}

/// Whether the request target is an absolute URI (kept by rewrites).
#[allow(dead_code)]
fn absolute(req: &RequestHead) -> bool {
    req.form == TargetForm::Absolute
}
