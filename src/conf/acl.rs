//! `acl NAME CRITERION [-i] VALUE...` and `if|unless COND` conditions, parsed and matched.

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
}

const CRITERIA: &[&str] = &["path", "path_beg", "path_end", "hdr(host)"];

/// Parses the arguments of an `acl` directive (`args[0]` is "acl").
pub fn parse_acl(args: &[String], line: usize) -> Result<Acl, String> {
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
    while let Some(flag) = rest.first().filter(|a| a.starts_with('-')) {
        match flag.as_str() {
            "-i" => nocase = true,
            "-m" => {
                return Err(
                    "'-m' match methods are not supported; use path_beg, path_end, path".into(),
                )
            }
            f => return Err(format!("unknown acl flag '{f}' (only -i)")),
        }
        rest = &rest[1..];
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

/// Parses `if|unless TERMS...`.
pub fn parse_cond(args: &[String]) -> Result<Cond, String> {
    let unless = match args.first().map(String::as_str) {
        Some("if") => false,
        Some("unless") => true,
        Some(other) => return Err(format!("expected 'if' or 'unless', got '{other}'")),
        None => return Err("missing condition ('if ACL' or 'unless ACL')".into()),
    };
    let mut any = vec![Vec::new()];
    for t in &args[1..] {
        match t.as_str() {
            "||" | "or" => {
                if any.last().is_some_and(Vec::is_empty) {
                    return Err("'||' without a term before it".into());
                }
                any.push(Vec::new());
            }
            "{" | "}" => {
                return Err(
                    "anonymous acls '{ ... }' are not supported; name them with 'acl'".into(),
                )
            }
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
    Ok(Cond { unless, any })
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
}

impl Acl {
    pub fn matches(&self, req: &impl Request) -> bool {
        let subject: &[u8] = match &self.criterion {
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
            }
        })
    }
}

fn strip_port(host: &[u8]) -> &[u8] {
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

    /// Names used by the condition, for validation.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.any.iter().flatten().map(|(_, n)| n.as_str())
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
}
