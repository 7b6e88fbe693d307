//! HAProxy sample expressions: a fetch (`src`, `req.hdr(host)`, `sc_http_req_rate(0)`)
//! followed by converters (`,lower`, `,map(FILE)`), and log-format strings that embed
//! them (`%[src]`). Parsed here; evaluated against a [`Txn`], which the request
//! pipeline implements (conditions in `acl` use the same fetches).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// What a fetch can ask of a transaction. Every method has a default (nothing
/// known), so a view that knows only the client address (`edge`) is short.
pub trait Txn {
    fn path(&self) -> &[u8];
    /// The first value of a request header.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Every field line of a request header, in order.
    fn headers(&self, name: &str) -> Vec<&[u8]> {
        self.header(name).into_iter().collect()
    }
    /// The client connection is TLS (`ssl_fc`).
    fn ssl(&self) -> bool {
        false
    }
    /// The client's address (`src`); `None` matches no network.
    fn src(&self) -> Option<IpAddr> {
        None
    }
    fn src_port(&self) -> Option<u16> {
        None
    }
    /// The address the client reached (`dst`, `dst_port`).
    fn dst(&self) -> Option<SocketAddr> {
        None
    }
    /// The TLS server name the client asked for (`ssl_fc_sni`).
    fn sni(&self) -> Option<&[u8]> {
        None
    }
    /// The certificate the client presented (verified: a bind with
    /// `verify` refuses the others at the handshake), for `ssl_c_*`.
    fn client_cert(&self) -> Option<&ClientCert> {
        None
    }
    fn method(&self) -> &[u8] {
        b""
    }
    /// The request target as received (`url`).
    fn url(&self) -> &[u8] {
        self.path()
    }
    /// The HTTP version, `1.1` or `2.0` (`req.ver`).
    fn version(&self) -> &[u8] {
        b"1.1"
    }
    /// The response status (`status`), in response rules.
    fn status(&self) -> Option<u16> {
        None
    }
    /// Every field line of a response header (`res.hdr`), in response rules.
    fn res_headers(&self, _name: &str) -> Vec<&[u8]> {
        Vec::new()
    }
    /// A variable set by `http-request set-var` (`var(txn.x)`).
    fn var(&self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    /// A stick-table counter (`sc_*`, `src_*` fetches).
    fn table(&self, _q: &TableQuery) -> Option<i64> {
        None
    }
}

/// Which counter of a stick-table entry a fetch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableData {
    HttpReqRate,
    HttpReqCnt,
    HttpErrRate,
    ConnCur,
    ConnCnt,
    ConnRate,
    Gpc0,
    Gpc0Rate,
    Gpc1,
}

impl TableData {
    pub fn name(self) -> &'static str {
        match self {
            TableData::HttpReqRate => "http_req_rate",
            TableData::HttpReqCnt => "http_req_cnt",
            TableData::HttpErrRate => "http_err_rate",
            TableData::ConnCur => "conn_cur",
            TableData::ConnCnt => "conn_cnt",
            TableData::ConnRate => "conn_rate",
            TableData::Gpc0 => "gpc0",
            TableData::Gpc0Rate => "gpc0_rate",
            TableData::Gpc1 => "gpc1",
        }
    }

    pub fn parse(s: &str) -> Option<TableData> {
        Some(match s {
            "http_req_rate" => TableData::HttpReqRate,
            "http_req_cnt" => TableData::HttpReqCnt,
            "http_err_rate" => TableData::HttpErrRate,
            "conn_cur" => TableData::ConnCur,
            "conn_cnt" => TableData::ConnCnt,
            "conn_rate" => TableData::ConnRate,
            "gpc0" => TableData::Gpc0,
            "gpc0_rate" => TableData::Gpc0Rate,
            "gpc1" => TableData::Gpc1,
            _ => return None,
        })
    }
}

/// Whose entry: the one tracked by `track-scN`, or the client address's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKey {
    Counter(u8),
    Src,
}

/// What to do with the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOp {
    Get,
    /// `sc0_inc_gpc0`: increments, returns the new value.
    Inc,
    /// `sc0_clr_gpc0`: clears, returns the old value.
    Clr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableQuery {
    pub key: TableKey,
    /// `None`: the tracked entry's own table, or (for `src_*`) the proxy's.
    pub table: Option<String>,
    pub data: TableData,
    pub op: TableOp,
}

/// A client certificate as the `ssl_c_*` fetches show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCert {
    /// Subject and issuer in OpenSSL's one-line form, as HAProxy gives them:
    /// `/C=FR/O=Example/CN=alice`.
    pub s_dn: String,
    pub i_dn: String,
    /// The serial number's bytes.
    pub serial: Vec<u8>,
    /// Validity, as HAProxy: `YYMMDDhhmmssZ`.
    pub not_before: String,
    pub not_after: String,
}

/// An `ssl_c_*` fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslC {
    Used,
    Verify,
    SDn,
    IDn,
    Serial,
    NotBefore,
    NotAfter,
}

/// A sample fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    SslC(SslC),
    Src,
    SrcPort,
    Dst,
    DstPort,
    SslFc,
    SslFcSni,
    Method,
    Path,
    Url,
    Query,
    Pathq,
    /// `base`: Host header + path.
    Base,
    Ver,
    /// `hdr(NAME[,OCC])`, `req.hdr`: comma-separated values. `full`: `req.fhdr`.
    ReqHdr {
        name: String,
        full: bool,
    },
    ReqHdrCnt(String),
    ResHdr(String),
    ResHdrCnt(String),
    Status,
    Str(String),
    Int(i64),
    Bool(bool),
    Var(String),
    Env(String),
    Table(TableQuery),
}

/// The kind of value a fetch gives, which picks the default ACL match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    Ip,
}

impl Fetch {
    pub fn kind(&self) -> Kind {
        match self {
            Fetch::Src | Fetch::Dst => Kind::Ip,
            Fetch::SrcPort
            | Fetch::DstPort
            | Fetch::ReqHdrCnt(_)
            | Fetch::ResHdrCnt(_)
            | Fetch::Status
            | Fetch::Int(_)
            | Fetch::Table(_) => Kind::Int,
            Fetch::SslFc | Fetch::Bool(_) | Fetch::SslC(SslC::Used) => Kind::Bool,
            Fetch::SslC(SslC::Verify) => Kind::Int,
            _ => Kind::Str,
        }
    }

    /// Only the client's address: decidable at accept, before any byte is read.
    pub fn at_accept(&self) -> bool {
        matches!(self, Fetch::Src | Fetch::Str(_) | Fetch::Int(_))
    }
}

/// A sample: what a fetch or converter yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Smp<'a> {
    Str(Cow<'a, [u8]>),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
}

impl Smp<'_> {
    /// As bytes, for header values and string matches.
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Smp::Str(s) => Cow::Borrowed(s.as_ref()),
            Smp::Int(n) => Cow::Owned(n.to_string().into_bytes()),
            Smp::Bool(b) => Cow::Borrowed(if *b { b"1" } else { b"0" }),
            Smp::Ip(ip) => Cow::Owned(ip.to_string().into_bytes()),
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Smp::Int(n) => Some(*n),
            Smp::Bool(b) => Some(i64::from(*b)),
            Smp::Str(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            Smp::Ip(_) => None,
        }
    }

    pub fn truth(&self) -> bool {
        match self {
            Smp::Bool(b) => *b,
            Smp::Int(n) => *n != 0,
            Smp::Str(s) => !s.is_empty(),
            Smp::Ip(_) => true,
        }
    }

    fn into_owned(self) -> Smp<'static> {
        match self {
            Smp::Str(s) => Smp::Str(Cow::Owned(s.into_owned())),
            Smp::Int(n) => Smp::Int(n),
            Smp::Bool(b) => Smp::Bool(b),
            Smp::Ip(ip) => Smp::Ip(ip),
        }
    }
}

/// A map file (`map(FILE[,DEFAULT])`): key -> value lines, `#` comments.
#[derive(Debug, Clone)]
pub struct MapFile {
    pub path: String,
    pub entries: Vec<(String, String)>,
    pub regexes: Vec<Option<regex::bytes::Regex>>,
}

impl PartialEq for MapFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.entries == other.entries
    }
}
impl Eq for MapFile {}

impl MapFile {
    fn load(path: &Path, reg: bool) -> Result<MapFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read map file '{}': {e}", path.display()))?;
        let mut entries = Vec::new();
        let mut regexes = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k.to_string(), v.trim().to_string()),
                None => (line.to_string(), String::new()),
            };
            if reg {
                let r = regex::bytes::Regex::new(&k)
                    .map_err(|e| format!("map file '{}': bad regex '{k}': {e}", path.display()))?;
                regexes.push(Some(r));
            }
            entries.push((k, v));
        }
        Ok(MapFile {
            path: path.display().to_string(),
            entries,
            regexes,
        })
    }
}

/// How a `map_*` converter compares its input with the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMatch {
    Str,
    Beg,
    End,
    Sub,
    Dom,
    Reg,
    Ip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conv {
    Lower,
    Upper,
    /// `field(INDEX,DELIMS)`: 1-based, negative from the end.
    Field(i64, String),
    Map {
        how: MapMatch,
        map: Arc<MapFile>,
        default: Option<String>,
    },
    /// `table_http_req_rate(TABLE)` and friends: the counter of the entry keyed by the input.
    Table(String, TableData),
    Base64,
    Hex,
}

/// A fetch and its converters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub fetch: Fetch,
    pub convs: Vec<Conv>,
    /// The text as written, for messages.
    pub text: String,
}

/// Splits `a,b(c,d),e` at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `name(args)` -> (name, args); `name` -> (name, []).
fn call(s: &str) -> Result<(&str, Vec<&str>), String> {
    match s.find('(') {
        None => Ok((s, Vec::new())),
        Some(i) => {
            let inner = s[i + 1..]
                .strip_suffix(')')
                .ok_or_else(|| format!("'{s}': missing ')'"))?;
            let args = if inner.is_empty() {
                Vec::new()
            } else {
                inner.split(',').map(str::trim).collect()
            };
            Ok((&s[..i], args))
        }
    }
}

/// Fetch names lb knows, for suggestions.
pub const FETCHES: &[&str] = &[
    "src",
    "src_port",
    "dst",
    "dst_port",
    "ssl_fc",
    "ssl_fc_sni",
    "ssl_c_used",
    "ssl_c_verify",
    "ssl_c_s_dn",
    "ssl_c_i_dn",
    "ssl_c_serial",
    "ssl_c_notbefore",
    "ssl_c_notafter",
    "method",
    "path",
    "url",
    "query",
    "pathq",
    "base",
    "req.ver",
    "hdr",
    "req.hdr",
    "req.fhdr",
    "hdr_cnt",
    "req.hdr_cnt",
    "res.hdr",
    "res.hdr_cnt",
    "status",
    "str",
    "int",
    "bool",
    "always_true",
    "always_false",
    "var",
    "env",
    "sc_http_req_rate",
    "src_http_req_rate",
    "sc_conn_cur",
    "src_conn_cur",
    "sc_get_gpc0",
    "src_get_gpc0",
    "sc_inc_gpc0",
    "src_inc_gpc0",
];

/// One fetch, `name` or `name(args)`.
pub fn parse_fetch(s: &str) -> Result<Fetch, String> {
    let (name, args) = call(s)?;
    let arg = |i: usize| args.get(i).map(|a| a.to_string());
    let need = |i: usize| arg(i).ok_or_else(|| format!("'{name}' needs an argument"));
    let none = || {
        if args.is_empty() {
            Ok(())
        } else {
            Err(format!("'{name}' takes no argument"))
        }
    };
    let f = match name {
        "src" => none().map(|_| Fetch::Src)?,
        "src_port" => none().map(|_| Fetch::SrcPort)?,
        "dst" => none().map(|_| Fetch::Dst)?,
        "dst_port" => none().map(|_| Fetch::DstPort)?,
        "ssl_fc" => none().map(|_| Fetch::SslFc)?,
        "ssl_fc_sni" | "ssl_fc_servername" => none().map(|_| Fetch::SslFcSni)?,
        "ssl_c_used" => none().map(|_| Fetch::SslC(SslC::Used))?,
        "ssl_c_verify" => none().map(|_| Fetch::SslC(SslC::Verify))?,
        "ssl_c_s_dn" => none().map(|_| Fetch::SslC(SslC::SDn))?,
        "ssl_c_i_dn" => none().map(|_| Fetch::SslC(SslC::IDn))?,
        "ssl_c_serial" => none().map(|_| Fetch::SslC(SslC::Serial))?,
        "ssl_c_notbefore" => none().map(|_| Fetch::SslC(SslC::NotBefore))?,
        "ssl_c_notafter" => none().map(|_| Fetch::SslC(SslC::NotAfter))?,
        "method" => none().map(|_| Fetch::Method)?,
        "path" => none().map(|_| Fetch::Path)?,
        "url" => none().map(|_| Fetch::Url)?,
        "query" => none().map(|_| Fetch::Query)?,
        "pathq" => none().map(|_| Fetch::Pathq)?,
        "base" => none().map(|_| Fetch::Base)?,
        "req.ver" | "req_ver" => none().map(|_| Fetch::Ver)?,
        "status" => none().map(|_| Fetch::Status)?,
        "always_true" => Fetch::Bool(true),
        "always_false" => Fetch::Bool(false),
        "hdr" | "req.hdr" => Fetch::ReqHdr {
            name: need(0)?.to_ascii_lowercase(),
            full: false,
        },
        "req.fhdr" => Fetch::ReqHdr {
            name: need(0)?.to_ascii_lowercase(),
            full: true,
        },
        "hdr_cnt" | "req.hdr_cnt" => Fetch::ReqHdrCnt(need(0)?.to_ascii_lowercase()),
        "res.hdr" | "shdr" => Fetch::ResHdr(need(0)?.to_ascii_lowercase()),
        "res.hdr_cnt" | "shdr_cnt" => Fetch::ResHdrCnt(need(0)?.to_ascii_lowercase()),
        "str" => Fetch::Str(need(0)?),
        "int" => Fetch::Int(
            need(0)?
                .parse()
                .map_err(|_| format!("'int' needs an integer, got '{}'", args[0]))?,
        ),
        "bool" => Fetch::Bool(need(0)? != "0"),
        "var" => Fetch::Var(var_name(&need(0)?)?),
        "env" => Fetch::Env(need(0)?),
        _ => match table_fetch(name, &args)? {
            Some(q) => Fetch::Table(q),
            None => {
                return Err(format!(
                    "unknown sample fetch '{name}'{}",
                    super::parse::did_you_mean(name, FETCHES)
                ))
            }
        },
    };
    Ok(f)
}

/// `txn.x`, `req.x`, `sess.x`, `res.x`, `proc.x`: a variable's scope and name.
pub fn var_name(s: &str) -> Result<String, String> {
    match s.split_once('.') {
        Some((scope, n))
            if ["txn", "req", "res", "sess", "proc"].contains(&scope) && !n.is_empty() =>
        {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "variable '{s}' needs a scope: txn.NAME, req.NAME, res.NAME, sess.NAME or proc.NAME"
        )),
    }
}

/// `sc_http_req_rate(0[,T])`, `sc0_http_req_rate([T])`, `src_http_req_rate([T])`,
/// `sc0_inc_gpc0`, `src_get_gpc0(T)`... `None` when `name` is not one.
fn table_fetch(name: &str, args: &[&str]) -> Result<Option<TableQuery>, String> {
    let (key, rest, mut args) = if let Some(r) = name.strip_prefix("src_") {
        (TableKey::Src, r, args.to_vec())
    } else if let Some(r) = name.strip_prefix("sc_") {
        let n = args
            .first()
            .and_then(|a| a.parse::<u8>().ok())
            .filter(|n| *n < 3)
            .ok_or_else(|| format!("'{name}' needs a counter number 0, 1 or 2"))?;
        (TableKey::Counter(n), r, args[1..].to_vec())
    } else if let Some(r) = ["sc0_", "sc1_", "sc2_"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
    {
        let n = name.as_bytes()[2] - b'0';
        (TableKey::Counter(n), r, args.to_vec())
    } else {
        return Ok(None);
    };
    let (op, data) = if let Some(d) = rest.strip_prefix("inc_") {
        (TableOp::Inc, d)
    } else if let Some(d) = rest.strip_prefix("clr_") {
        (TableOp::Clr, d)
    } else if let Some(d) = rest.strip_prefix("get_") {
        (TableOp::Get, d)
    } else {
        (TableOp::Get, rest)
    };
    let Some(data) = TableData::parse(data) else {
        return Ok(None);
    };
    if op != TableOp::Get && !matches!(data, TableData::Gpc0 | TableData::Gpc1) {
        return Ok(None);
    }
    let table = if args.is_empty() {
        None
    } else {
        Some(args.remove(0).to_string())
    };
    if let Some(x) = args.first() {
        return Err(format!("'{name}': unexpected argument '{x}'"));
    }
    Ok(Some(TableQuery {
        key,
        table,
        data,
        op,
    }))
}

/// `fetch,conv,...`; map files are read relative to `base`.
pub fn parse_expr(s: &str, base: &Path) -> Result<Expr, String> {
    let parts = split_top(s);
    let fetch = parse_fetch(parts[0].trim())?;
    let mut convs = Vec::new();
    for p in &parts[1..] {
        convs.push(parse_conv(p.trim(), base)?);
    }
    Ok(Expr {
        fetch,
        convs,
        text: s.to_string(),
    })
}

const CONVS: &[&str] = &[
    "lower", "upper", "field", "map", "map_str", "map_beg", "map_end", "map_sub", "map_dom",
    "map_reg", "map_ip", "base64", "hex",
];

fn parse_conv(s: &str, base: &Path) -> Result<Conv, String> {
    let (name, args) = call(s)?;
    let how = match name {
        "lower" => return Ok(Conv::Lower),
        "upper" => return Ok(Conv::Upper),
        "base64" => return Ok(Conv::Base64),
        "hex" => return Ok(Conv::Hex),
        "field" => {
            let idx = args
                .first()
                .and_then(|a| a.parse::<i64>().ok())
                .filter(|n| *n != 0)
                .ok_or("'field' needs a non-zero index")?;
            let delims = args.get(1).ok_or("'field' needs delimiters")?;
            return Ok(Conv::Field(idx, delims.to_string()));
        }
        "map" | "map_str" => MapMatch::Str,
        "map_beg" => MapMatch::Beg,
        "map_end" => MapMatch::End,
        "map_sub" => MapMatch::Sub,
        "map_dom" => MapMatch::Dom,
        "map_reg" => MapMatch::Reg,
        "map_ip" => MapMatch::Ip,
        n => {
            if let Some(d) = n.strip_prefix("table_").and_then(TableData::parse) {
                let t = args.first().ok_or(format!("'{n}' needs a table name"))?;
                return Ok(Conv::Table(t.to_string(), d));
            }
            return Err(format!(
                "unknown converter '{n}'{}",
                super::parse::did_you_mean(n, CONVS)
            ));
        }
    };
    let file = args.first().ok_or(format!("'{name}' needs a map file"))?;
    let map = MapFile::load(&base.join(file), how == MapMatch::Reg)?;
    Ok(Conv::Map {
        how,
        map: Arc::new(map),
        default: args.get(1).map(|d| d.to_string()),
    })
}

fn hdr_values<'a>(vals: Vec<&'a [u8]>, full: bool) -> Vec<Smp<'a>> {
    let mut out = Vec::new();
    for v in vals {
        if full {
            out.push(Smp::Str(Cow::Borrowed(v)));
        } else {
            for item in v.split(|&b| b == b',') {
                out.push(Smp::Str(Cow::Borrowed(item.trim_ascii())));
            }
        }
    }
    out
}

impl Fetch {
    /// Every value the fetch has (a header's occurrences; one for most).
    pub fn all<'a>(&self, t: &'a dyn Txn) -> Vec<Smp<'a>> {
        let one = |s: Option<Smp<'a>>| s.into_iter().collect();
        match self {
            Fetch::Src => one(t.src().map(Smp::Ip)),
            Fetch::SrcPort => one(t.src_port().map(|p| Smp::Int(p.into()))),
            Fetch::Dst => one(t.dst().map(|a| Smp::Ip(a.ip()))),
            Fetch::DstPort => one(t.dst().map(|a| Smp::Int(a.port().into()))),
            Fetch::SslFc => one(Some(Smp::Bool(t.ssl()))),
            Fetch::SslFcSni => one(t.sni().map(|s| Smp::Str(Cow::Borrowed(s)))),
            Fetch::SslC(w) => {
                let c = t.client_cert();
                let s = |v: &'a [u8]| Some(Smp::Str(Cow::Borrowed(v)));
                one(match (w, c) {
                    (SslC::Used, c) => Some(Smp::Bool(c.is_some())),
                    // Only verified certificates get past the handshake.
                    (SslC::Verify, _) => Some(Smp::Int(0)),
                    (_, None) => None,
                    (SslC::SDn, Some(c)) => s(c.s_dn.as_bytes()),
                    (SslC::IDn, Some(c)) => s(c.i_dn.as_bytes()),
                    (SslC::Serial, Some(c)) => s(&c.serial),
                    (SslC::NotBefore, Some(c)) => s(c.not_before.as_bytes()),
                    (SslC::NotAfter, Some(c)) => s(c.not_after.as_bytes()),
                })
            }
            Fetch::Method => one(Some(Smp::Str(Cow::Borrowed(t.method())))),
            Fetch::Path => one(Some(Smp::Str(Cow::Borrowed(t.path())))),
            Fetch::Url => one(Some(Smp::Str(Cow::Borrowed(t.url())))),
            Fetch::Query => {
                let u = t.url();
                one(u
                    .iter()
                    .position(|&b| b == b'?')
                    .map(|i| Smp::Str(Cow::Borrowed(&u[i + 1..]))))
            }
            Fetch::Pathq => {
                let u = t.url();
                let p = t.path();
                // Origin form: the target itself; absolute form: from the path on.
                let start = u.windows(p.len().max(1)).position(|w| w == p).unwrap_or(0);
                one(Some(Smp::Str(Cow::Borrowed(&u[start..]))))
            }
            Fetch::Base => {
                let mut v = t.header("host").unwrap_or(b"").to_vec();
                v.extend_from_slice(t.path());
                one(Some(Smp::Str(Cow::Owned(v))))
            }
            Fetch::Ver => one(Some(Smp::Str(Cow::Borrowed(t.version())))),
            Fetch::ReqHdr { name, full } => hdr_values(t.headers(name), *full),
            Fetch::ReqHdrCnt(name) => {
                let n = hdr_values(t.headers(name), false).len();
                one(Some(Smp::Int(n as i64)))
            }
            Fetch::ResHdr(name) => hdr_values(t.res_headers(name), false),
            Fetch::ResHdrCnt(name) => {
                let n = hdr_values(t.res_headers(name), false).len();
                one(Some(Smp::Int(n as i64)))
            }
            Fetch::Status => one(t.status().map(|s| Smp::Int(s.into()))),
            Fetch::Str(s) => one(Some(Smp::Str(Cow::Owned(s.as_bytes().to_vec())))),
            Fetch::Int(n) => one(Some(Smp::Int(*n))),
            Fetch::Bool(b) => one(Some(Smp::Bool(*b))),
            Fetch::Var(n) => one(t.var(n).map(|v| Smp::Str(Cow::Owned(v)))),
            Fetch::Env(n) => one(std::env::var(n)
                .ok()
                .map(|v| Smp::Str(Cow::Owned(v.into_bytes())))),
            Fetch::Table(q) => one(t.table(q).map(Smp::Int)),
        }
    }

    /// The value of the fetch in an expression: a header's last occurrence, as HAProxy.
    pub fn last<'a>(&self, t: &'a dyn Txn) -> Option<Smp<'a>> {
        self.all(t).pop()
    }
}

fn map_lookup(how: MapMatch, map: &MapFile, input: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(input);
    for (i, (k, v)) in map.entries.iter().enumerate() {
        let hit = match how {
            MapMatch::Str => s == k.as_str(),
            MapMatch::Beg => s.starts_with(k.as_str()),
            MapMatch::End => s.ends_with(k.as_str()),
            MapMatch::Sub => s.contains(k.as_str()),
            MapMatch::Dom => s.split(['.', '/', '?', ':']).any(|w| w == k),
            MapMatch::Reg => map
                .regexes
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|r| r.is_match(input)),
            MapMatch::Ip => {
                let mut set = super::cidr::CidrSet::default();
                set.add(k).is_ok() && s.parse::<IpAddr>().is_ok_and(|ip| set.contains(ip))
            }
        };
        if hit {
            return Some(v.clone());
        }
    }
    None
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

impl Expr {
    /// The expression's value; `None` when the fetch has none (absent header...).
    pub fn eval<'a>(&self, t: &'a dyn Txn) -> Option<Smp<'a>> {
        let mut v = self.fetch.last(t)?;
        for c in &self.convs {
            v = apply_conv(c, v, t)?;
        }
        Some(v)
    }

    /// Every value (for ACLs: any may match), converters applied to each.
    pub fn eval_all<'a>(&self, t: &'a dyn Txn) -> Vec<Smp<'a>> {
        if self.convs.is_empty() {
            return self.fetch.all(t);
        }
        self.fetch
            .all(t)
            .into_iter()
            .filter_map(|mut v| {
                for c in &self.convs {
                    v = apply_conv(c, v, t)?;
                }
                Some(v)
            })
            .collect()
    }
}

fn apply_conv<'a>(c: &Conv, v: Smp<'a>, t: &'a dyn Txn) -> Option<Smp<'a>> {
    let owned = |b: Vec<u8>| Some(Smp::Str(Cow::Owned(b)));
    match c {
        Conv::Lower => owned(v.bytes().to_ascii_lowercase()),
        Conv::Upper => owned(v.bytes().to_ascii_uppercase()),
        Conv::Base64 => owned(base64(&v.bytes())),
        Conv::Hex => owned(
            v.bytes()
                .iter()
                .flat_map(|b| format!("{b:02X}").into_bytes())
                .collect(),
        ),
        Conv::Field(idx, delims) => {
            let b = v.bytes();
            let parts: Vec<&[u8]> = b.split(|x| delims.as_bytes().contains(x)).collect();
            let i = if *idx > 0 {
                (*idx - 1) as usize
            } else {
                parts.len().checked_sub(idx.unsigned_abs() as usize)?
            };
            owned(parts.get(i)?.to_vec())
        }
        Conv::Map { how, map, default } => {
            match map_lookup(*how, map, &v.bytes()).or_else(|| default.clone()) {
                Some(s) => owned(s.into_bytes()),
                None => None,
            }
        }
        Conv::Table(table, data) => {
            // Looked up through the transaction: the key is the input.
            let _ = (table, data);
            let q = TableQuery {
                key: TableKey::Src,
                table: Some(table.clone()),
                data: *data,
                op: TableOp::Get,
            };
            t.table(&q).map(Smp::Int)
        }
    }
    .map(Smp::into_owned)
}

/// One piece of a log-format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(Vec<u8>),
    Expr(Expr),
    /// `%ci`, `%cp`, `%fi`, `%fp`: client and frontend address and port.
    ClientIp,
    ClientPort,
    FrontIp,
    FrontPort,
}

/// A log-format string as rule values use it: literal text with `%[expr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFmt(pub Vec<Piece>);

impl LogFmt {
    pub fn parse(s: &str, base: &Path) -> Result<LogFmt, String> {
        let mut out = Vec::new();
        let mut lit = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                lit.push(b[i]);
                i += 1;
                continue;
            }
            let rest = &s[i + 1..];
            let (piece, used) = if rest.starts_with('%') {
                lit.push(b'%');
                i += 2;
                continue;
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("'%[' without ']' in '{s}'"))?;
                (Piece::Expr(parse_expr(&r[..end], base)?), end + 2)
            } else if rest.starts_with("ci") {
                (Piece::ClientIp, 2)
            } else if rest.starts_with("cp") {
                (Piece::ClientPort, 2)
            } else if rest.starts_with("fi") {
                (Piece::FrontIp, 2)
            } else if rest.starts_with("fp") {
                (Piece::FrontPort, 2)
            } else {
                return Err(format!(
                    "unsupported log-format variable at '%{}' in '{s}' (lb has %[expr], %ci, %cp, %fi, %fp, %%)",
                    rest.chars().take(3).collect::<String>()
                ));
            };
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            out.push(piece);
            i += 1 + used;
        }
        if !lit.is_empty() {
            out.push(Piece::Lit(lit));
        }
        Ok(LogFmt(out))
    }

    /// The text, with each expression's value (empty when it has none).
    pub fn render(&self, t: &dyn Txn) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            match p {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Expr(e) => {
                    if let Some(v) = e.eval(t) {
                        out.extend_from_slice(&v.bytes());
                    }
                }
                Piece::ClientIp => {
                    if let Some(ip) = t.src() {
                        out.extend_from_slice(ip.to_string().as_bytes());
                    }
                }
                Piece::ClientPort => {
                    if let Some(p) = t.src_port() {
                        out.extend_from_slice(p.to_string().as_bytes());
                    }
                }
                Piece::FrontIp => {
                    if let Some(a) = t.dst() {
                        out.extend_from_slice(a.ip().to_string().as_bytes());
                    }
                }
                Piece::FrontPort => {
                    if let Some(a) = t.dst() {
                        out.extend_from_slice(a.port().to_string().as_bytes());
                    }
                }
            }
        }
        out
    }

    /// Expressions in it, for validation (tables named, ...).
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.0.iter().filter_map(|p| match p {
            Piece::Expr(e) => Some(e),
            _ => None,
        })
    }
}

/// Variables a transaction sets (`set-var`), small and per request.
#[derive(Debug, Default, Clone)]
pub struct Vars(pub HashMap<String, Vec<u8>>);

#[cfg(test)]
mod tests {
    use super::*;

    struct T;
    impl Txn for T {
        fn path(&self) -> &[u8] {
            b"/api/users"
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            (name == "host").then_some(b"Example.com:8080")
        }
        fn src(&self) -> Option<IpAddr> {
            "10.1.2.3".parse().ok()
        }
        fn url(&self) -> &[u8] {
            b"/api/users?id=7"
        }
    }

    #[test]
    fn expressions_and_formats() {
        let e = parse_expr("req.hdr(host),lower", Path::new("")).unwrap();
        assert_eq!(e.eval(&T).unwrap().bytes().as_ref(), b"example.com:8080");
        let e = parse_expr("path,field(2,/)", Path::new("")).unwrap();
        assert_eq!(e.eval(&T).unwrap().bytes().as_ref(), b"api");
        let e = parse_expr("path,field(-1,/)", Path::new("")).unwrap();
        assert_eq!(e.eval(&T).unwrap().bytes().as_ref(), b"users");
        let f = LogFmt::parse("ip=%[src] q=%[query] 100%%", Path::new("")).unwrap();
        assert_eq!(f.render(&T), b"ip=10.1.2.3 q=id=7 100%");
        assert!(parse_expr("srcc", Path::new(""))
            .unwrap_err()
            .contains("did you mean 'src'"));
        assert!(LogFmt::parse("%[src", Path::new("")).is_err());
        assert!(parse_expr("src,lowr", Path::new("")).is_err());
        assert_eq!(
            parse_fetch("sc0_http_req_rate").unwrap(),
            Fetch::Table(TableQuery {
                key: TableKey::Counter(0),
                table: None,
                data: TableData::HttpReqRate,
                op: TableOp::Get
            })
        );
        assert!(matches!(
            parse_fetch("src_http_req_rate(t)").unwrap(),
            Fetch::Table(TableQuery {
                key: TableKey::Src,
                table: Some(_),
                ..
            })
        ));
        assert!(parse_fetch("sc_http_req_rate").is_err());
        assert_eq!(base64(b"ab"), b"YWI=");
    }

    #[test]
    fn maps() {
        let dir = crate::testutil::TempDir::new("sample-map");
        std::fs::write(
            dir.join("hosts.map"),
            "# x\napi.example.com be_api\n/static be_static\n",
        )
        .unwrap();
        let e = parse_expr("req.hdr(host),lower,map(hosts.map,be_default)", &dir).unwrap();
        struct H(&'static [u8]);
        impl Txn for H {
            fn path(&self) -> &[u8] {
                b"/static/x"
            }
            fn header(&self, _: &str) -> Option<&[u8]> {
                Some(self.0)
            }
        }
        assert_eq!(
            e.eval(&H(b"API.example.com")).unwrap().bytes().as_ref(),
            b"be_api"
        );
        assert_eq!(e.eval(&H(b"x")).unwrap().bytes().as_ref(), b"be_default");
        let e = parse_expr("path,map_beg(hosts.map)", &dir).unwrap();
        assert_eq!(e.eval(&H(b"x")).unwrap().bytes().as_ref(), b"be_static");
    }
}
