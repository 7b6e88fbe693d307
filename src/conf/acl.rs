//! `acl NAME CRITERION [FLAGS] [OPERATOR] VALUE...` and `if|unless COND` conditions,
//! parsed and matched. A criterion is a sample fetch (`conf::sample`) with an
//! optional match suffix (`path_beg`, `hdr_dom(host)`) or `-m METHOD`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::cidr::CidrSet;
use super::parse::did_you_mean;
use super::sample::{self, Expr, Fetch, Kind, Smp};

pub use super::sample::Txn as Request;

/// How a sample is compared with an acl's values (`-m`).
#[derive(Debug, Clone)]
pub enum Match {
    Str,
    Beg,
    End,
    Sub,
    /// Delimited by `/`, `?`, `.`, `:`: a domain (`hdr_dom`) or a path part (`path_dir`).
    Dom,
    Dir,
    Reg(Vec<regex::bytes::Regex>),
    Len(Vec<IntPat>),
    Int(Vec<IntPat>),
    /// The sample is true (non-zero, non-empty); no values.
    Bool,
    /// The sample exists; no values.
    Found,
    Ip(Arc<CidrSet>),
}

impl PartialEq for Match {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}
impl Eq for Match {}

/// An integer pattern: `N`, `N:M`, or `OP N` (eq, ne, gt, ge, lt, le).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntPat {
    pub lo: i64,
    pub hi: i64,
}

impl IntPat {
    fn matches(&self, n: i64) -> bool {
        (self.lo..=self.hi).contains(&n)
    }
}

/// What part of the request an ACL looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// The client's address is in one of these networks (`src CIDR...`, `src -f FILE`).
    Src(Arc<CidrSet>),
    /// A sample expression and how its value is matched.
    Sample { expr: Expr, how: Match },
}

/// One `acl` line. Several lines with one name are OR'ed, as in HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub name: String,
    pub line: usize,
    pub criterion: Criterion,
    pub nocase: bool,
    pub values: Vec<String>,
}

/// `if`/`unless` followed by terms: `a b` is a AND b, `a || b` is a OR b, `!a` negates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub unless: bool,
    /// OR of ANDs of (negated, acl name).
    pub any: Vec<Vec<(bool, String)>>,
    /// Anonymous acls written inline as `{ CRITERION VALUE... }`; named by their text.
    pub anon: Vec<Acl>,
}

/// Match suffixes of the classic criteria (`path_beg` is `path -m beg`).
const SUFFIXES: &[(&str, &str)] = &[
    ("_beg", "beg"),
    ("_end", "end"),
    ("_sub", "sub"),
    ("_dom", "dom"),
    ("_dir", "dir"),
    ("_reg", "reg"),
    ("_len", "len"),
    ("_ip", "ip"),
];

const CRITERIA: &[&str] = &[
    "path",
    "path_beg",
    "path_end",
    "path_sub",
    "path_reg",
    "path_dir",
    "path_len",
    "url",
    "url_beg",
    "url_end",
    "url_sub",
    "url_reg",
    "hdr(host)",
    "hdr_beg",
    "hdr_end",
    "hdr_dom",
    "hdr_sub",
    "hdr_reg",
    "hdr_cnt",
    "src",
    "dst",
    "dst_port",
    "method",
    "ssl_fc",
    "ssl_fc_sni",
    "base",
    "base_beg",
    "query",
    "status",
    "req.hdr",
    "res.hdr",
    "var",
];

/// Parses the arguments of an `acl` directive (`args[0]` is "acl"); `-f FILE`
/// paths are relative to the working directory.
pub fn parse_acl(args: &[String], line: usize) -> Result<Acl, String> {
    parse_acl_in(args, line, Path::new(""))
}

/// Splits `hdr_beg(host),lower` into the fetch text without its match suffix
/// (`hdr(host),lower`) and the match the suffix names.
fn split_suffix(crit: &str) -> (String, Option<&'static str>) {
    let (head, tail) = match crit.find(['(', ',']) {
        Some(i) => crit.split_at(i),
        None => (crit, ""),
    };
    // `hdr_cnt`, `req.hdr_cnt` are fetches of their own; `ssl_fc_sni_end` is sni + end.
    for (suf, how) in SUFFIXES {
        if let Some(base) = head.strip_suffix(suf) {
            if sample::parse_fetch(base).is_ok()
                || ["hdr", "req.hdr", "res.hdr", "shdr", "req.fhdr"].contains(&base)
            {
                return (format!("{base}{tail}"), Some(how));
            }
        }
    }
    (crit.to_string(), None)
}

/// `parse_acl` with relative `-f FILE` paths resolved against `base` (the conf file's directory).
pub fn parse_acl_in(args: &[String], line: usize, base: &Path) -> Result<Acl, String> {
    if args.len() < 3 {
        return Err("expected 'acl NAME CRITERION [-i] VALUE...'".into());
    }
    let name = args[1].clone();
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(format!("invalid acl name '{name}'"));
    }
    let crit = args[2].as_str();
    let (text, suffix) = split_suffix(crit);
    let expr = sample::parse_expr(&text, base).map_err(|e| {
        if e.starts_with("unknown sample fetch") {
            format!(
                "unknown acl criterion '{crit}'{}",
                did_you_mean(crit, CRITERIA)
            )
        } else {
            e
        }
    })?;
    let mut rest = &args[3..];
    let mut nocase = false;
    let mut files = Vec::new();
    let mut method: Option<String> = suffix.map(str::to_string);
    while let Some(flag) = rest.first().filter(|a| a.starts_with('-')) {
        match flag.as_str() {
            "-i" => nocase = true,
            "-n" | "-u" => {}
            "--" => {
                rest = &rest[1..];
                break;
            }
            "-f" => {
                let f = rest.get(1).ok_or("'-f' needs a file name")?;
                files.push(base.join(f));
                rest = &rest[1..];
            }
            "-m" => {
                let m = rest.get(1).ok_or("'-m' needs a match method")?;
                if suffix.is_some() {
                    return Err(format!(
                        "'-m {m}' with '{crit}', which names its match already"
                    ));
                }
                method = Some(m.clone());
                rest = &rest[1..];
            }
            f if f.parse::<i64>().is_ok() => break,
            f => return Err(format!("unknown acl flag '{f}' (-i, -f FILE, -m METHOD)")),
        }
        rest = &rest[1..];
    }
    let mut values: Vec<String> = rest.to_vec();
    for f in &files {
        if matches!(expr.fetch, Fetch::Src | Fetch::Dst) && method.is_none() {
            continue;
        }
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read '{}': {e}", f.display()))?;
        values.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let kind = expr.fetch.kind();
    let how_name = method.unwrap_or_else(|| {
        match kind {
            Kind::Str => "str",
            Kind::Int => "int",
            Kind::Bool => "bool",
            Kind::Ip => "ip",
        }
        .to_string()
    });
    let needs_values = !matches!(how_name.as_str(), "bool" | "found");
    if needs_values && values.is_empty() && files.is_empty() {
        if matches!(expr.fetch, Fetch::Src) {
            return Err(format!(
                "acl '{name}' needs at least one network or '-f FILE'"
            ));
        }
        return Err(format!("acl '{name}' needs at least one value"));
    }
    if !needs_values && !values.is_empty() {
        return Err(format!(
            "acl '{name}': '-m {how_name}' takes no value, got '{}'",
            values[0]
        ));
    }
    if nocase {
        values = values.iter().map(|v| v.to_ascii_lowercase()).collect();
    }
    let how = match how_name.as_str() {
        "str" => Match::Str,
        "beg" => Match::Beg,
        "end" => Match::End,
        "sub" => Match::Sub,
        "dom" => Match::Dom,
        "dir" => Match::Dir,
        "bool" => Match::Bool,
        "found" => Match::Found,
        "reg" => Match::Reg(
            values
                .iter()
                .map(|v| {
                    regex::bytes::RegexBuilder::new(v)
                        .case_insensitive(nocase)
                        .build()
                        .map_err(|e| format!("bad regex '{v}': {e}"))
                })
                .collect::<Result<_, _>>()?,
        ),
        "len" => Match::Len(int_pats(&values)?),
        "int" => Match::Int(int_pats(&values)?),
        "ip" => {
            let mut set = CidrSet::default();
            for f in &files {
                set.add_file(f)?;
            }
            for v in &values {
                set.add(v)?;
            }
            Match::Ip(Arc::new(set))
        }
        m => {
            return Err(format!(
                "unknown match method '{m}' (str, beg, end, sub, dom, dir, reg, len, int, ip, bool, found)"
            ))
        }
    };
    let criterion = match (&expr.fetch, &how) {
        (Fetch::Src, Match::Ip(set)) if expr.convs.is_empty() => Criterion::Src(set.clone()),
        _ => Criterion::Sample { expr, how },
    };
    Ok(Acl {
        name,
        line,
        criterion,
        nocase,
        values,
    })
}

/// `10`, `10:20`, `gt 10`... as inclusive ranges.
fn int_pats(values: &[String]) -> Result<Vec<IntPat>, String> {
    let num = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("expected an integer, got '{s}'"))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let v = values[i].as_str();
        i += 1;
        let op = |n: i64| match v {
            "eq" => Some(IntPat { lo: n, hi: n }),
            "ne" => None,
            "gt" => Some(IntPat {
                lo: n.saturating_add(1),
                hi: i64::MAX,
            }),
            "ge" => Some(IntPat {
                lo: n,
                hi: i64::MAX,
            }),
            "lt" => Some(IntPat {
                lo: i64::MIN,
                hi: n.saturating_sub(1),
            }),
            "le" => Some(IntPat {
                lo: i64::MIN,
                hi: n,
            }),
            _ => None,
        };
        if ["eq", "ne", "gt", "ge", "lt", "le"].contains(&v) {
            let n = num(values.get(i).ok_or(format!("'{v}' needs a number"))?)?;
            i += 1;
            match op(n) {
                Some(p) => out.push(p),
                None => {
                    out.push(IntPat {
                        lo: i64::MIN,
                        hi: n.saturating_sub(1),
                    });
                    out.push(IntPat {
                        lo: n.saturating_add(1),
                        hi: i64::MAX,
                    });
                }
            }
        } else if let Some((a, b)) = v.split_once(':') {
            let lo = if a.is_empty() { i64::MIN } else { num(a)? };
            let hi = if b.is_empty() { i64::MAX } else { num(b)? };
            out.push(IntPat { lo, hi });
        } else {
            let n = num(v)?;
            out.push(IntPat { lo: n, hi: n });
        }
    }
    Ok(out)
}

/// Parses `if|unless TERMS...`; relative `-f` paths of anonymous acls are taken as written.
pub fn parse_cond(args: &[String]) -> Result<Cond, String> {
    parse_cond_in(args, Path::new(""))
}

/// Parses `if|unless TERMS...`, where a term is an acl name, `!NAME`, or an anonymous
/// acl `{ CRITERION [FLAGS] VALUE... }` whose `-f FILE` is resolved against `base`.
pub fn parse_cond_in(args: &[String], base: &Path) -> Result<Cond, String> {
    let unless = match args.first().map(String::as_str) {
        Some("if") => false,
        Some("unless") => true,
        Some(other) => return Err(format!("expected 'if' or 'unless', got '{other}'")),
        None => return Err("missing condition ('if ACL' or 'unless ACL')".into()),
    };
    let mut any = vec![Vec::new()];
    let mut anon: Vec<Acl> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let t = &args[i];
        i += 1;
        match t.as_str() {
            "||" | "or" => {
                if any.last().is_some_and(Vec::is_empty) {
                    return Err("'||' without a term before it".into());
                }
                any.push(Vec::new());
            }
            "{" | "!{" => {
                let Some(len) = args[i..].iter().position(|a| a == "}") else {
                    return Err("'{' without a closing '}'".into());
                };
                let body = &args[i..i + len];
                i += len + 1;
                if body.iter().any(|a| a == "{" || a == "!{") {
                    return Err("anonymous acls do not nest".into());
                }
                let name = format!("{{ {} }}", body.join(" "));
                let mut words = vec!["acl".to_string(), name.clone()];
                words.extend_from_slice(body);
                if body.is_empty() {
                    return Err("empty anonymous acl '{ }'".into());
                }
                let acl = parse_acl_named(&words, base)?;
                if !anon.iter().any(|a| a.name == name) {
                    anon.push(acl);
                }
                if let Some(last) = any.last_mut() {
                    last.push((t == "!{", name));
                }
            }
            "}" => return Err("'}' without an opening '{'".into()),
            t => {
                let (neg, name) = match t.strip_prefix('!') {
                    Some(n) => (true, n),
                    None => (false, t),
                };
                if name.is_empty() {
                    return Err("'!' without an acl name".into());
                }
                if let Some(last) = any.last_mut() {
                    last.push((neg, name.to_string()));
                }
            }
        }
    }
    if any.iter().any(Vec::is_empty) {
        return Err("condition has no acl after 'if'/'unless' or '||'".into());
    }
    Ok(Cond { unless, any, anon })
}

/// An anonymous acl: its generated name skips the name check of `acl` lines.
fn parse_acl_named(words: &[String], base: &Path) -> Result<Acl, String> {
    let mut named = words.to_vec();
    named[1] = "anonymous".into();
    let mut acl = parse_acl_in(&named, 0, base)?;
    acl.name = words[1].clone();
    Ok(acl)
}

/// Condition names that need no `acl` line: `ssl_fc` (the client connection
/// is TLS) and HAProxy's predefined acls.
pub const BUILTIN: &[&str] = &[
    "ssl_fc",
    "TRUE",
    "FALSE",
    "HTTP",
    "HTTP_1.0",
    "HTTP_1.1",
    "HTTP_2.0",
    "HTTP_CONTENT",
    "HTTP_URL_ABS",
    "HTTP_URL_SLASH",
    "HTTP_URL_STAR",
    "LOCALHOST",
    "METH_CONNECT",
    "METH_DELETE",
    "METH_GET",
    "METH_HEAD",
    "METH_OPTIONS",
    "METH_POST",
    "METH_PUT",
    "METH_TRACE",
];

/// A predefined acl's value, `None` when `name` is not one.
fn builtin(name: &str, req: &dyn Request) -> Option<bool> {
    let m = |x: &[u8]| req.method() == x;
    Some(match name {
        "ssl_fc" => req.ssl(),
        "TRUE" => true,
        "FALSE" => false,
        "HTTP" => true,
        "HTTP_1.0" => req.version() == b"1.0",
        "HTTP_1.1" => req.version() == b"1.1",
        "HTTP_2.0" => req.version() == b"2.0",
        "HTTP_CONTENT" => {
            req.header("content-length").is_some_and(|v| v != b"0")
                || req.header("transfer-encoding").is_some()
        }
        "HTTP_URL_ABS" => req.url().windows(3).any(|w| w == b"://"),
        "HTTP_URL_SLASH" => req.url().starts_with(b"/"),
        "HTTP_URL_STAR" => req.url() == b"*",
        "LOCALHOST" => req.src().is_some_and(|ip| ip.is_loopback()),
        "METH_CONNECT" => m(b"CONNECT"),
        "METH_DELETE" => m(b"DELETE"),
        "METH_GET" => m(b"GET") || m(b"HEAD"),
        "METH_HEAD" => m(b"HEAD"),
        "METH_OPTIONS" => m(b"OPTIONS"),
        "METH_POST" => m(b"POST"),
        "METH_PUT" => m(b"PUT"),
        "METH_TRACE" => m(b"TRACE"),
        _ => return None,
    })
}

impl Acl {
    /// Only the client's address: decidable at accept, before any byte is read.
    pub fn at_accept(&self) -> bool {
        match &self.criterion {
            Criterion::Src(_) => true,
            Criterion::Sample { expr, .. } => expr.fetch.at_accept(),
        }
    }

    pub fn matches(&self, req: &dyn Request) -> bool {
        let (expr, how) = match &self.criterion {
            Criterion::Src(set) => return req.src().is_some_and(|ip| set.contains(ip)),
            Criterion::Sample { expr, how } => (expr, how),
        };
        let samples = expr.eval_all(req);
        let host = matches!(&expr.fetch, Fetch::ReqHdr { name, .. } if name == "host");
        samples.iter().any(|s| self.sample_matches(s, how, host))
    }

    fn sample_matches(&self, s: &Smp<'_>, how: &Match, host: bool) -> bool {
        match how {
            Match::Bool => return s.truth(),
            Match::Found => return true,
            Match::Int(p) => return s.int().is_some_and(|n| p.iter().any(|p| p.matches(n))),
            Match::Len(p) => {
                let n = s.bytes().len() as i64;
                return p.iter().any(|p| p.matches(n));
            }
            Match::Ip(set) => {
                return match s {
                    Smp::Ip(ip) => set.contains(*ip),
                    other => std::str::from_utf8(&other.bytes())
                        .ok()
                        .and_then(|t| t.parse::<IpAddr>().ok())
                        .is_some_and(|ip| set.contains(ip)),
                }
            }
            Match::Reg(res) => return res.iter().any(|r| r.is_match(&s.bytes())),
            _ => {}
        }
        let owned = s.bytes();
        let mut subject: &[u8] = &owned;
        if host && matches!(how, Match::Str) {
            subject = strip_port(subject);
        }
        let eq = |a: &[u8], b: &[u8]| {
            if self.nocase {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        self.values.iter().any(|v| {
            let v = v.as_bytes();
            match how {
                Match::Str => eq(subject, v),
                Match::Beg => subject.len() >= v.len() && eq(&subject[..v.len()], v),
                Match::End => {
                    subject.len() >= v.len() && eq(&subject[subject.len() - v.len()..], v)
                }
                Match::Sub => v.is_empty() || subject.windows(v.len()).any(|w| eq(w, v)),
                Match::Dom | Match::Dir => {
                    let delims: &[u8] = if matches!(how, Match::Dir) {
                        b"/?"
                    } else {
                        b"/?.:"
                    };
                    subject
                        .split(|b| delims.contains(b))
                        .any(|w| eq(w, v.trim_ascii()))
                        || (v.contains(&b'.') || v.contains(&b'/'))
                            && subject.windows(v.len()).any(|w| eq(w, v))
                }
                _ => false,
            }
        })
    }
}

/// A Host header value without its port (`[v6]` keeps its brackets).
pub fn strip_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        // [v6]:port
        return match host.iter().position(|&b| b == b']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

impl Cond {
    /// Evaluates against the acls of the section (all lines of a name OR'ed).
    pub fn eval(&self, acls: &[Acl], req: &dyn Request) -> bool {
        let named = |name: &str| {
            if !acls.iter().any(|a| a.name == name) {
                if let Some(b) = builtin(name, req) {
                    return b;
                }
            }
            if let Some(a) = self.anon.iter().find(|a| a.name == name) {
                return a.matches(req);
            }
            acls.iter()
                .filter(|a| a.name == name)
                .any(|a| a.matches(req))
        };
        let hit = self
            .any
            .iter()
            .any(|all| all.iter().all(|(neg, n)| named(n) != *neg));
        hit != self.unless
    }

    /// Names of `acl` lines the condition uses (not its anonymous acls), for validation.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.any
            .iter()
            .flatten()
            .map(|(_, n)| n.as_str())
            .filter(|n| !self.anon.iter().any(|a| a.name == *n))
    }

    /// Every acl the condition can evaluate: its anonymous ones, then the named ones in `acls`.
    pub fn acls<'a>(&'a self, acls: &'a [Acl]) -> impl Iterator<Item = &'a Acl> {
        let names: Vec<&str> = self.names().collect();
        self.anon.iter().chain(
            acls.iter()
                .filter(move |a| names.contains(&a.name.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(&'static str, Option<&'static str>);
    impl Request for R {
        fn path(&self) -> &[u8] {
            self.0.as_bytes()
        }
        fn header(&self, name: &str) -> Option<&[u8]> {
            (name == "host")
                .then_some(())
                .and(self.1.map(str::as_bytes))
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn criteria_match() {
        let a = parse_acl(&words("acl api path_beg /api/ /v2/"), 1).unwrap();
        assert!(a.matches(&R("/api/x", None)));
        assert!(a.matches(&R("/v2/", None)));
        assert!(!a.matches(&R("/ap", None)));
        let a = parse_acl(&words("acl img path_end -i .PNG"), 1).unwrap();
        assert!(a.matches(&R("/a.png", None)));
        let a = parse_acl(&words("acl root path /"), 1).unwrap();
        assert!(a.matches(&R("/", None)) && !a.matches(&R("/x", None)));
        let a = parse_acl(&words("acl h hdr(Host) -i WWW.foobar.com"), 1).unwrap();
        assert!(a.matches(&R("/", Some("www.FOOBAR.com:8080"))));
        assert!(!a.matches(&R("/", Some("foobar.com"))));
        assert!(!a.matches(&R("/", None)));
    }

    #[test]
    fn conditions() {
        let acls = vec![
            parse_acl(&words("acl a path_beg /a"), 1).unwrap(),
            parse_acl(&words("acl b path_end .b"), 2).unwrap(),
        ];
        let c = parse_cond(&words("if a b")).unwrap();
        assert!(c.eval(&acls, &R("/a.b", None)));
        assert!(!c.eval(&acls, &R("/a", None)));
        let c = parse_cond(&words("if a || b")).unwrap();
        assert!(c.eval(&acls, &R("/x.b", None)));
        let c = parse_cond(&words("if !a")).unwrap();
        assert!(c.eval(&acls, &R("/x", None)) && !c.eval(&acls, &R("/a", None)));
        let c = parse_cond(&words("unless a")).unwrap();
        assert!(c.eval(&acls, &R("/x", None)));
        assert_eq!(c.names().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn ssl_fc_is_builtin() {
        struct T(bool);
        impl Request for T {
            fn path(&self) -> &[u8] {
                b"/"
            }
            fn header(&self, _: &str) -> Option<&[u8]> {
                None
            }
            fn ssl(&self) -> bool {
                self.0
            }
        }
        let c = parse_cond(&words("unless ssl_fc")).unwrap();
        assert!(c.eval(&[], &T(false)));
        assert!(!c.eval(&[], &T(true)));
    }

    #[test]
    fn errors() {
        assert!(parse_acl(&words("acl a"), 1).is_err());
        assert!(parse_acl(&words("acl a path_bg /x"), 1)
            .unwrap_err()
            .contains("did you mean 'path_beg'"));
        assert!(parse_acl(&words("acl a path_beg -i"), 1)
            .unwrap_err()
            .contains("at least one value"));
        assert!(parse_acl(&words("acl a path_beg -x /"), 1)
            .unwrap_err()
            .contains("unknown acl flag"));
        assert!(parse_cond(&words("when a")).is_err());
        assert!(parse_cond(&words("if")).is_err());
        assert!(parse_cond(&words("if a ||")).is_err());
        assert!(parse_cond(&words("if || a")).is_err());
        assert!(parse_cond(&words("if !")).is_err());
    }

    struct S(&'static str);
    impl Request for S {
        fn path(&self) -> &[u8] {
            b"/"
        }
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
        fn src(&self) -> Option<IpAddr> {
            self.0.parse().ok()
        }
    }

    #[test]
    fn src_acls_and_anonymous_conditions() {
        let acls = vec![parse_acl(&words("acl lan src 127.0.0.0/30 ::1"), 1).unwrap()];
        let c = parse_cond(&words("if lan")).unwrap();
        assert!(c.eval(&acls, &S("127.0.0.2")) && c.eval(&acls, &S("::1")));
        assert!(!c.eval(&acls, &S("127.0.0.9")));
        // no address (e.g. a unix peer) matches no network
        assert!(!c.eval(&acls, &S("")));
        let c = parse_cond(&words("if { src 127.0.0.5 10.0.0.0/8 } !lan")).unwrap();
        assert!(c.eval(&acls, &S("127.0.0.5")) && c.eval(&acls, &S("10.9.9.9")));
        assert!(!c.eval(&acls, &S("127.0.0.1")));
        assert_eq!(c.names().collect::<Vec<_>>(), ["lan"]);
        assert_eq!(c.acls(&acls).count(), 2);
        let c = parse_cond(&words("unless !{ path_beg /a } || { src ::1 }")).unwrap();
        assert_eq!(c.anon.len(), 2);
        assert!(parse_cond(&words("if { src 1.2.3.4"))
            .unwrap_err()
            .contains("closing"));
        assert!(parse_cond(&words("if }")).is_err());
        assert!(parse_cond(&words("if { }")).unwrap_err().contains("empty"));
        assert!(parse_cond(&words("if { src nope }"))
            .unwrap_err()
            .contains("invalid address"));
        assert!(parse_acl(&words("acl a src"), 1).is_err());
        assert!(parse_acl(&words("acl a path -f /nonexistent/x"), 1)
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn src_lists_from_files_relative_to_base() {
        let dir = crate::testutil::TempDir::new("acl");
        std::fs::write(dir.join("deny.lst"), "127.0.0.3 # one host\n::1\n").unwrap();
        let a = parse_acl_in(&words("acl bad src -f deny.lst 10.0.0.1"), 1, &dir).unwrap();
        assert!(a.matches(&S("127.0.0.3")) && a.matches(&S("::1")) && a.matches(&S("10.0.0.1")));
        assert!(!a.matches(&S("127.0.0.1")));
        let c = parse_cond_in(&words("if { src -f deny.lst }"), &dir).unwrap();
        assert!(c.eval(&[], &S("127.0.0.3")));
        assert!(parse_acl_in(&words("acl bad src -f missing.lst"), 1, &dir).is_err());
    }
}
