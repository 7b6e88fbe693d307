//! `http-request`, `http-response` and `http-after-response` rules (and the
//! older `redirect` keyword): an action, its arguments, an optional condition.

use std::path::Path;

use super::acl::{self, Cond};
use super::parse::did_you_mean;
use super::sample::{self, Expr, LogFmt};

/// Which rule list a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
    AfterResponse,
}

impl Phase {
    pub fn keyword(self) -> &'static str {
        match self {
            Phase::Request => "http-request",
            Phase::Response => "http-response",
            Phase::AfterResponse => "http-after-response",
        }
    }
}

/// One rule line.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRule {
    pub line: usize,
    pub action: Action,
    pub cond: Option<Cond>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    Scheme,
    Location,
    Prefix,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stops the rule list: later rules are skipped.
    Allow,
    /// Request: answer `status` (403 by default). Response: 502 instead of the response.
    Deny {
        status: u16,
    },
    Return {
        status: u16,
        content_type: Option<String>,
        body: Option<LogFmt>,
        headers: Vec<(String, LogFmt)>,
    },
    Redirect {
        kind: RedirectKind,
        to: LogFmt,
        code: u16,
        drop_query: bool,
    },
    SetHeader(String, LogFmt),
    AddHeader(String, LogFmt),
    DelHeader(String),
    /// `replace-header NAME REGEX FMT` (whole line) / `replace-value` (each comma item).
    ReplaceHeader {
        name: String,
        re: Regex,
        with: LogFmt,
        each_value: bool,
    },
    SetPath(LogFmt),
    SetUri(LogFmt),
    SetQuery(LogFmt),
    SetMethod(LogFmt),
    SetStatus {
        status: u16,
        reason: Option<String>,
    },
    SetVar(String, Expr),
    UnsetVar(String),
    /// `track-scN KEY [table T]`: the request counts in the entry of KEY.
    TrackSc {
        n: u8,
        key: Expr,
        table: Option<String>,
    },
    /// `sc-inc-gpc0(N)`.
    IncGpc0(u8),
    /// An action lb does not need (a cache lb does not have): why, for the warning.
    Ignored(&'static str),
}

/// A compiled regex compared by its text.
#[derive(Debug, Clone)]
pub struct Regex(pub regex::bytes::Regex);

impl PartialEq for Regex {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

const REQUEST_ACTIONS: &[&str] = &[
    "allow",
    "deny",
    "return",
    "redirect",
    "set-header",
    "add-header",
    "del-header",
    "replace-header",
    "replace-value",
    "set-path",
    "set-uri",
    "set-query",
    "set-method",
    "set-var",
    "unset-var",
    "track-sc0",
    "track-sc1",
    "track-sc2",
    "sc-inc-gpc0",
];

const RESPONSE_ACTIONS: &[&str] = &[
    "allow",
    "deny",
    "return",
    "redirect",
    "set-header",
    "add-header",
    "del-header",
    "replace-header",
    "replace-value",
    "set-status",
    "set-var",
    "unset-var",
    "sc-inc-gpc0",
];

/// HAProxy actions lb knows but does not implement, and why (an error, never silence).
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("tarpit", "lb does not hold connections open on purpose"),
    ("auth", "lb has no userlists"),
    ("use-service", "lb has no Lua or built-in services"),
    ("lua", "lb has no Lua"),
    (
        "set-dst",
        "lb does not route to addresses taken from requests",
    ),
    (
        "set-dst-port",
        "lb does not route to addresses taken from requests",
    ),
    ("set-src", "use 'accept-proxy' or 'option forwardfor'"),
    ("set-nice", "lb has no task priorities"),
    ("silent-drop", "lb answers or closes"),
    ("reject", "use 'deny'"),
    ("wait-for-body", "lb streams bodies"),
];

/// HAProxy actions that change nothing about what is allowed or where it
/// goes: accepted, with a warning saying what lb does instead.
const WARN_ACTIONS: &[(&str, &str)] = &[
    (
        "cache-use",
        "lb has no cache: every request goes to a server",
    ),
    ("cache-store", "lb has no cache: responses are not stored"),
    ("set-log-level", "lb's access log has no levels"),
    ("capture", "lb's access log has its own fields"),
];

/// Where the condition starts (`if`/`unless`), or the end.
fn split_cond(a: &[String]) -> usize {
    a.iter()
        .position(|w| w == "if" || w == "unless")
        .unwrap_or(a.len())
}

/// Parses one rule; `a[0]` is the keyword (`http-request`, ...), `a[1]` the action.
pub fn parse(phase: Phase, a: &[String], line: usize, base: &Path) -> Result<HttpRule, String> {
    let kw = phase.keyword();
    let Some(verb) = a.get(1) else {
        return Err(format!("'{kw}' needs an action"));
    };
    let end = split_cond(a);
    let cond = if end < a.len() {
        Some(acl::parse_cond_in(&a[end..], base)?)
    } else {
        None
    };
    let args = &a[2..end.max(2)];
    let action = action(phase, verb, args, base)?;
    Ok(HttpRule { line, action, cond })
}

/// `redirect scheme|location|prefix ...` as a frontend keyword of its own.
pub fn parse_redirect(a: &[String], line: usize, base: &Path) -> Result<HttpRule, String> {
    let mut words = vec!["http-request".to_string()];
    words.extend_from_slice(a);
    parse(Phase::Request, &words, line, base)
}

fn fmt(s: &str, base: &Path) -> Result<LogFmt, String> {
    LogFmt::parse(s, base)
}

fn header_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("invalid header name '{s}'"));
    }
    Ok(s.to_string())
}

fn status(s: &str, lo: u16, hi: u16) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("invalid status '{s}' ({lo}..{hi})")),
    }
}

fn no_more(verb: &str, rest: &[String]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(x) => Err(format!(
            "'{verb}': unexpected argument '{x}' (a condition starts with 'if' or 'unless')"
        )),
    }
}

fn action(phase: Phase, verb: &str, args: &[String], base: &Path) -> Result<Action, String> {
    let kw = phase.keyword();
    let known = if phase == Phase::Request {
        REQUEST_ACTIONS
    } else {
        RESPONSE_ACTIONS
    };
    let arg = |i: usize, what: &str| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("'{kw} {verb}' needs {what}"))
    };
    // `track-sc0`, `set-var(txn.x)`, `sc-inc-gpc0(0)`: arguments in the verb.
    let (name, paren) = match verb.split_once('(') {
        Some((n, p)) => (n, p.strip_suffix(')')),
        None => (verb, None),
    };
    if let Some((_, why)) = WARN_ACTIONS.iter().find(|(n, _)| *n == name) {
        return Ok(Action::Ignored(why));
    }
    if !known.contains(&name) {
        if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(n, _)| *n == name) {
            return Err(format!("'{kw} {name}' is not implemented: {why}"));
        }
        return Err(format!(
            "unknown action '{name}' for '{kw}'{}",
            did_you_mean(name, known)
        ));
    }
    Ok(match name {
        "allow" => {
            no_more(verb, args)?;
            Action::Allow
        }
        "deny" => {
            let mut st = if phase == Phase::Request { 403 } else { 502 };
            let mut i = 0;
            while i < args.len() {
                match args[i].as_str() {
                    "deny_status" | "status" => {
                        st = if phase == Phase::Request {
                            status(arg(i + 1, "a status")?, 400, 599)?
                        } else {
                            status(arg(i + 1, "a status")?, 200, 599)?
                        };
                        i += 2;
                    }
                    x => return Err(format!("'{kw} deny': unexpected argument '{x}'")),
                }
            }
            Action::Deny { status: st }
        }
        "return" => {
            let mut st = 200;
            let mut content_type = None;
            let mut body = None;
            let mut headers = Vec::new();
            let mut i = 0;
            while i < args.len() {
                match args[i].as_str() {
                    "status" => st = status(arg(i + 1, "a status")?, 200, 599)?,
                    "content-type" => content_type = Some(arg(i + 1, "a type")?.to_string()),
                    "string" => {
                        body = Some(LogFmt(vec![sample::Piece::Lit(
                            arg(i + 1, "a string")?.as_bytes().to_vec(),
                        )]))
                    }
                    "lf-string" => body = Some(fmt(arg(i + 1, "a format")?, base)?),
                    "file" | "lf-file" => {
                        let p = base.join(arg(i + 1, "a file")?);
                        let text = std::fs::read(&p)
                            .map_err(|e| format!("cannot read '{}': {e}", p.display()))?;
                        body = Some(LogFmt(vec![sample::Piece::Lit(text)]));
                    }
                    "hdr" => {
                        let n = header_name(arg(i + 1, "a header name")?)?;
                        let v = fmt(arg(i + 2, "a header value")?, base)?;
                        headers.push((n, v));
                        i += 1;
                    }
                    "default-errorfiles" | "errorfile" | "errorfiles" => {
                        return Err(format!(
                            "'{kw} return {}' is not implemented (say 'string' or 'file')",
                            args[i]
                        ))
                    }
                    x => return Err(format!("'{kw} return': unexpected argument '{x}'")),
                }
                i += 2;
            }
            if body.is_some() && content_type.is_none() {
                return Err(format!("'{kw} return': a body needs 'content-type TYPE'"));
            }
            Action::Return {
                status: st,
                content_type,
                body,
                headers,
            }
        }
        "redirect" => {
            let kind = match arg(0, "scheme, location or prefix")? {
                "scheme" => RedirectKind::Scheme,
                "location" => RedirectKind::Location,
                "prefix" => RedirectKind::Prefix,
                k => {
                    return Err(format!(
                        "unknown redirect '{k}'{} (scheme, location or prefix)",
                        did_you_mean(k, &["scheme", "location", "prefix"])
                    ))
                }
            };
            let to = arg(1, "a target")?;
            if kind == RedirectKind::Scheme {
                let s = to.to_ascii_lowercase();
                if s != "https" && s != "http" {
                    return Err(format!("unknown scheme '{to}' (http or https)"));
                }
            }
            let mut code = 302;
            let mut drop_query = false;
            let mut i = 2;
            while i < args.len() {
                match args[i].as_str() {
                    "code" => {
                        let c = arg(i + 1, "a code")?;
                        code = match c.parse::<u16>() {
                            Ok(n @ (301 | 302 | 303 | 307 | 308)) => n,
                            _ => {
                                return Err(format!(
                                    "invalid redirect code '{c}' (301, 302, 303, 307 or 308)"
                                ))
                            }
                        };
                        i += 2;
                    }
                    "drop-query" => {
                        drop_query = true;
                        i += 1;
                    }
                    "append-slash" | "set-cookie" | "clear-cookie" => {
                        return Err(format!("'redirect ... {}' is not implemented", args[i]))
                    }
                    x => return Err(format!("'{kw} redirect': unexpected argument '{x}'")),
                }
            }
            let to = if kind == RedirectKind::Scheme {
                LogFmt(vec![sample::Piece::Lit(
                    to.to_ascii_lowercase().into_bytes(),
                )])
            } else {
                fmt(to, base)?
            };
            Action::Redirect {
                kind,
                to,
                code,
                drop_query,
            }
        }
        "set-header" | "add-header" => {
            let n = header_name(arg(0, "a header name")?)?;
            let v = fmt(arg(1, "a value")?, base)?;
            no_more(verb, &args[2..])?;
            if name == "set-header" {
                Action::SetHeader(n, v)
            } else {
                Action::AddHeader(n, v)
            }
        }
        "del-header" => {
            let n = header_name(arg(0, "a header name")?)?;
            if args.get(1).is_some_and(|a| a == "-m") {
                return Err(format!("'{kw} del-header NAME -m ...' is not implemented"));
            }
            no_more(verb, &args[1..])?;
            Action::DelHeader(n)
        }
        "replace-header" | "replace-value" => {
            let n = header_name(arg(0, "a header name")?)?;
            let r = arg(1, "a regex")?;
            let re = regex::bytes::Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| format!("bad regex '{r}': {e}"))?;
            let with = fmt(&arg(2, "a replacement")?.replace("\\", "$"), base)?;
            no_more(verb, &args[3..])?;
            Action::ReplaceHeader {
                name: n,
                re: Regex(re),
                with,
                each_value: name == "replace-value",
            }
        }
        "set-path" | "set-uri" | "set-query" | "set-method" => {
            let v = fmt(arg(0, "a value")?, base)?;
            no_more(verb, &args[1..])?;
            match name {
                "set-path" => Action::SetPath(v),
                "set-uri" => Action::SetUri(v),
                "set-query" => Action::SetQuery(v),
                _ => Action::SetMethod(v),
            }
        }
        "set-status" => {
            let st = status(arg(0, "a status")?, 100, 999)?;
            let reason = match args.get(1).map(String::as_str) {
                Some("reason") => Some(arg(2, "a reason")?.to_string()),
                Some(x) => return Err(format!("'{kw} set-status': unexpected argument '{x}'")),
                None => None,
            };
            Action::SetStatus { status: st, reason }
        }
        "set-var" | "unset-var" => {
            let v = paren.ok_or_else(|| format!("'{kw} {name}(SCOPE.NAME)' needs a variable"))?;
            let v = sample::var_name(v)?;
            if name == "unset-var" {
                no_more(verb, args)?;
                Action::UnsetVar(v)
            } else {
                let e = sample::parse_expr(arg(0, "an expression")?, base)?;
                no_more(verb, &args[1..])?;
                Action::SetVar(v, e)
            }
        }
        "track-sc0" | "track-sc1" | "track-sc2" => {
            let n = name.as_bytes()[8] - b'0';
            let key = sample::parse_expr(arg(0, "a key such as 'src'")?, base)?;
            let table = match args.get(1).map(String::as_str) {
                Some("table") => Some(arg(2, "a table name")?.to_string()),
                Some(x) => return Err(format!("'{kw} {name}': unexpected argument '{x}'")),
                None => None,
            };
            no_more(verb, args.get(3..).unwrap_or(&[]))?;
            Action::TrackSc { n, key, table }
        }
        "sc-inc-gpc0" => {
            let n = paren
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|n| *n < 3)
                .ok_or("'sc-inc-gpc0(N)' needs a counter 0, 1 or 2")?;
            no_more(verb, args)?;
            Action::IncGpc0(n)
        }
        _ => unreachable!("action table and match agree"),
    })
}

impl HttpRule {
    /// Expressions the rule evaluates (for checks on the tables they name).
    pub fn exprs(&self) -> Vec<&Expr> {
        let fmts: Vec<&LogFmt> = match &self.action {
            Action::SetHeader(_, v)
            | Action::AddHeader(_, v)
            | Action::SetPath(v)
            | Action::SetUri(v)
            | Action::SetQuery(v)
            | Action::SetMethod(v) => vec![v],
            Action::ReplaceHeader { with, .. } => vec![with],
            Action::Redirect { to, .. } => vec![to],
            Action::Return { body, headers, .. } => {
                body.iter().chain(headers.iter().map(|(_, v)| v)).collect()
            }
            Action::SetVar(_, e) | Action::TrackSc { key: e, .. } => return vec![e],
            _ => Vec::new(),
        };
        fmts.into_iter().flat_map(LogFmt::exprs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        crate::conf::parse::tokenize(s).unwrap()
    }

    #[test]
    fn parses_the_common_rules() {
        let p = |s: &str| parse(Phase::Request, &w(s), 1, Path::new(""));
        let r = p("http-request set-header X-Forwarded-Proto https if { ssl_fc }").unwrap();
        assert!(matches!(r.action, Action::SetHeader(ref n, _) if n == "X-Forwarded-Proto"));
        assert!(r.cond.is_some());
        let r = p("http-request deny deny_status 429 if abuse").unwrap();
        assert_eq!(r.action, Action::Deny { status: 429 });
        assert!(p("http-request return status 200 content-type text/plain string ok").is_ok());
        assert!(p("http-request return status 200 string ok")
            .unwrap_err()
            .contains("content-type"));
        assert!(p("http-request redirect location /x code 308").is_ok());
        assert!(p("http-request redirect scheme https code 301 unless { ssl_fc }").is_ok());
        assert!(p("http-request track-sc0 src table t").is_ok());
        assert!(p("http-request set-var(txn.host) req.hdr(host)").is_ok());
        assert!(p("http-request set-var(host) req.hdr(host)")
            .unwrap_err()
            .contains("scope"));
        assert!(p("http-request set-headr X y")
            .unwrap_err()
            .contains("did you mean 'set-header'"));
        assert!(p("http-request tarpit")
            .unwrap_err()
            .contains("not implemented"));
        assert!(p("http-request set-header X")
            .unwrap_err()
            .contains("needs a value"));
        let p = |s: &str| parse(Phase::Response, &w(s), 1, Path::new(""));
        assert!(p("http-response set-header Strict-Transport-Security \"max-age=1\"").is_ok());
        assert!(p("http-response set-path /x").is_err());
        assert!(p("http-response set-status 503 reason \"Go away\"").is_ok());
    }
}
