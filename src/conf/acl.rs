//! `acl NAME CRITERION [-i] VALUE...` and `if|unless COND` conditions, parsed and matched.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::cidr::CidrSet;
use super::parse::did_you_mean;

/// What part of the request an ACL looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// The whole path (no query string).
    Path,
    PathBeg,
    PathEnd,
    /// A header's value, e.g. `hdr(host)`; for Host the port is ignored.
    Hdr(String),
    /// The client's address is in one of these networks (`src CIDR...`, `src -f FILE`).
    Src(Arc<CidrSet>),
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

const CRITERIA: &[&str] = &["path", "path_beg", "path_end", "hdr(host)", "src"];

/// Parses the arguments of an `acl` directive (`args[0]` is "acl"); `src -f FILE`
/// paths are relative to the working directory.
pub fn parse_acl(args: &[String], line: usize) -> Result<Acl, String> {
    parse_acl_in(args, line, Path::new(""))
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
    let criterion = match crit {
        "path" => Criterion::Path,
        "path_beg" => Criterion::PathBeg,
        "path_end" => Criterion::PathEnd,
        "src" => Criterion::Src(Arc::new(CidrSet::default())),
        c if c.starts_with("hdr(") && c.ends_with(')') && c.len() > 5 => {
            Criterion::Hdr(c[4..c.len() - 1].to_ascii_lowercase())
        }
        c => {
            return Err(format!(
                "unknown acl criterion '{c}'{}",
                did_you_mean(c, CRITERIA)
            ))
        }
    };
    let mut rest = &args[3..];
    let mut nocase = false;
    let mut files = Vec::new();
    while let Some(flag) = rest.first().filter(|a| a.starts_with('-')) {
        match flag.as_str() {
            "-i" => nocase = true,
            "-f" => {
                if !matches!(criterion, Criterion::Src(_)) {
                    return Err("'-f FILE' is supported for 'src' acls only".into());
                }
                let f = rest.get(1).ok_or("'-f' needs a file name")?;
                files.push(base.join(f));
                rest = &rest[1..];
            }
            "-m" => {
                return Err(
                    "'-m' match methods are not supported; use path_beg, path_end, path".into(),
                )
            }
            f => return Err(format!("unknown acl flag '{f}' (-i or -f FILE)")),
        }
        rest = &rest[1..];
    }
    if let Criterion::Src(_) = criterion {
        let mut set = CidrSet::default();
        for f in &files {
            set.add_file(f)?;
        }
        for v in rest {
            set.add(v)?;
        }
        if files.is_empty() && rest.is_empty() {
            return Err(format!(
                "acl '{name}' needs at least one network or '-f FILE'"
            ));
        }
        return Ok(Acl {
            name,
            line,
            criterion: Criterion::Src(Arc::new(set)),
            nocase,
            values: rest.to_vec(),
        });
    }
    if rest.is_empty() {
        return Err(format!("acl '{name}' needs at least one value"));
    }
    let values = rest
        .iter()
        .map(|v| {
            if nocase {
                v.to_ascii_lowercase()
            } else {
                v.clone()
            }
        })
        .collect();
    Ok(Acl {
        name,
        line,
        criterion,
        nocase,
        values,
    })
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

/// Condition names that need no `acl` line: `ssl_fc` (the client connection is TLS).
pub const BUILTIN: &[&str] = &["ssl_fc"];

/// What an ACL can ask of a request.
pub trait Request {
    fn path(&self) -> &[u8];
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The client connection is TLS (`ssl_fc`).
    fn ssl(&self) -> bool {
        false
    }
    /// The client's address (`src`); `None` matches no network.
    fn src(&self) -> Option<IpAddr> {
        None
    }
}

impl Acl {
    pub fn matches(&self, req: &impl Request) -> bool {
        let subject: &[u8] = match &self.criterion {
            Criterion::Src(set) => return req.src().is_some_and(|ip| set.contains(ip)),
            Criterion::Path | Criterion::PathBeg | Criterion::PathEnd => req.path(),
            Criterion::Hdr(h) => match req.header(h) {
                Some(v) if h == "host" => strip_port(v),
                Some(v) => v,
                None => return false,
            },
        };
        self.values.iter().any(|v| {
            let v = v.as_bytes();
            let eq = |a: &[u8], b: &[u8]| {
                if self.nocase {
                    a.eq_ignore_ascii_case(b)
                } else {
                    a == b
                }
            };
            match self.criterion {
                Criterion::Path | Criterion::Hdr(_) => eq(subject, v),
                Criterion::PathBeg => subject.len() >= v.len() && eq(&subject[..v.len()], v),
                Criterion::PathEnd => {
                    subject.len() >= v.len() && eq(&subject[subject.len() - v.len()..], v)
                }
                Criterion::Src(_) => false,
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
    pub fn eval(&self, acls: &[Acl], req: &impl Request) -> bool {
        let named = |name: &str| {
            if name == "ssl_fc" && !acls.iter().any(|a| a.name == name) {
                return req.ssl();
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
        assert!(parse_acl(&words("acl a path -f x"), 1)
            .unwrap_err()
            .contains("src"));
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
