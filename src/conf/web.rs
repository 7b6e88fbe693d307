//! The `web NAME` section: settings of one embedded static-file server (nginx's role).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::{self, did_you_mean, Directive};

/// `app PREFIX HOST:PORT`: requests whose path starts with PREFIX go to that server.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRoute {
    pub line: usize,
    pub prefix: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebConf {
    pub name: String,
    pub line: usize,
    pub bind: SocketAddr,
    pub line_bind: usize,
    /// Document root; a relative `root` is resolved against the conf file's directory.
    pub root: PathBuf,
    pub line_root: usize,
    /// File served for a directory request.
    pub index: String,
    /// Longest prefix wins.
    pub apps: Vec<AppRoute>,
    /// `Cache-Control` value sent with static files (`expires` sets `max-age`).
    pub cache_control: Option<String>,
    /// Idle time allowed on a client (a write that makes no progress, too).
    pub timeout_client: Duration,
    /// Time to receive a whole request head.
    pub timeout_request: Duration,
    /// Time to wait for the next request on a kept-alive connection.
    pub timeout_keep_alive: Duration,
    /// Connect and idle timeouts towards the app server.
    pub timeout_connect: Duration,
    pub timeout_server: Duration,
}

pub const DEFAULT_INDEX: &str = "index.html";

const KEYWORDS: &[&str] = &[
    "bind",
    "root",
    "index",
    "app",
    "expires",
    "cache-control",
    "timeout",
];

impl WebConf {
    pub fn new(name: String, line: usize) -> WebConf {
        WebConf {
            name,
            line,
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            line_bind: 0,
            root: PathBuf::new(),
            line_root: 0,
            index: DEFAULT_INDEX.to_string(),
            apps: Vec::new(),
            cache_control: None,
            timeout_client: Duration::from_secs(60),
            timeout_request: Duration::from_secs(10),
            timeout_keep_alive: Duration::from_secs(60),
            timeout_connect: Duration::from_secs(2),
            timeout_server: Duration::from_secs(30),
        }
    }
}

/// Applies one directive of a `web` section. `base` is the conf file's directory.
pub fn directive(w: &mut WebConf, d: &Directive, base: &Path) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || d.one_arg();
    let e = |m: String| format!("'{kw}': {m}");
    match kw {
        "bind" => {
            w.bind = parse::bind_addr(arg()?).map_err(e)?;
            w.line_bind = d.line;
        }
        "root" => {
            let r = Path::new(arg()?);
            w.root = if r.is_absolute() {
                r.to_path_buf()
            } else {
                base.join(r)
            };
            w.line_root = d.line;
        }
        "index" => {
            let f = arg()?;
            if f.is_empty() || f.contains(['/', '\\', '\0']) || f == "." || f == ".." {
                return Err(e(format!("'{f}' must be a plain file name")));
            }
            w.index = f.to_string();
        }
        "app" => {
            if d.args.len() != 3 {
                return Err(e("expected 'app PREFIX HOST:PORT'".into()));
            }
            let prefix = &d.args[1];
            if !prefix.starts_with('/') {
                return Err(e(format!("prefix '{prefix}' must start with '/'")));
            }
            if w.apps.iter().any(|a| &a.prefix == prefix) {
                return Err(e(format!("duplicate prefix '{prefix}'")));
            }
            let addr = parse::peer_addr(&d.args[2]).map_err(e)?;
            w.apps.push(AppRoute {
                line: d.line,
                prefix: prefix.clone(),
                addr,
            });
            // Longest prefix first, so the first match is the most specific.
            w.apps.sort_by_key(|a| std::cmp::Reverse(a.prefix.len()));
        }
        "expires" => {
            let t = parse::duration(arg()?).map_err(e)?;
            w.cache_control = Some(format!("max-age={}", t.as_secs()));
        }
        "cache-control" => {
            if d.args.len() < 2 {
                return Err(e("missing argument".into()));
            }
            let v = d.args[1..].join(" ");
            if v.bytes().any(|b| b.is_ascii_control()) {
                return Err(e("control characters are not allowed".into()));
            }
            w.cache_control = Some(v);
        }
        "timeout" => {
            if d.args.len() != 3 {
                return Err(e("expected 'timeout NAME DURATION'".into()));
            }
            let t = parse::duration(&d.args[2]).map_err(e)?;
            if t.is_zero() {
                return Err(e("must be greater than zero".into()));
            }
            match d.args[1].as_str() {
                "client" => w.timeout_client = t,
                "http-request" => w.timeout_request = t,
                "http-keep-alive" => w.timeout_keep_alive = t,
                "connect" => w.timeout_connect = t,
                "server" => w.timeout_server = t,
                other => {
                    return Err(e(format!(
                        "unknown timeout '{other}' (client, http-request, http-keep-alive, connect, server)"
                    )))
                }
            }
        }
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in web section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// Checks a finished `web` section.
/// The root must be a directory lb can open (it is opened at start).
pub fn check_root(w: &WebConf) -> Result<(), String> {
    let shown = w.root.display();
    match std::fs::read_dir(&w.root) {
        Ok(_) => Ok(()),
        Err(_) if w.root.exists() && !w.root.is_dir() => {
            Err(format!("'root': '{shown}' is not a directory"))
        }
        Err(e) => Err(format!("'root': cannot open '{shown}': {e}")),
    }
}

pub fn finish(w: &WebConf) -> Result<(), String> {
    if w.line_bind == 0 {
        return Err(format!("web '{}' has no 'bind' line", w.name));
    }
    if w.line_root == 0 {
        return Err(format!("web '{}' has no 'root' line", w.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(line: &str) -> Directive {
        Directive {
            line: 1,
            args: line.split_whitespace().map(String::from).collect(),
        }
    }

    #[test]
    fn keywords_parse() {
        let mut w = WebConf::new("s".into(), 1);
        let base = Path::new("/etc/lb");
        directive(&mut w, &dir("bind 127.0.0.1:0"), base).unwrap();
        directive(&mut w, &dir("root www"), base).unwrap();
        directive(&mut w, &dir("index home.html"), base).unwrap();
        directive(&mut w, &dir("app /api/ 127.0.0.1:9001"), base).unwrap();
        directive(&mut w, &dir("app /api/v2/ 127.0.0.1:9002"), base).unwrap();
        directive(&mut w, &dir("expires 1h"), base).unwrap();
        directive(&mut w, &dir("timeout http-keep-alive 5s"), base).unwrap();
        assert_eq!(w.root, Path::new("/etc/lb/www"));
        assert_eq!(w.index, "home.html");
        assert_eq!(w.apps[0].prefix, "/api/v2/");
        assert_eq!(w.cache_control.as_deref(), Some("max-age=3600"));
        assert_eq!(w.timeout_keep_alive, Duration::from_secs(5));
        directive(&mut w, &dir("root /srv/www"), base).unwrap();
        assert_eq!(w.root, Path::new("/srv/www"));
        directive(&mut w, &dir("cache-control public, max-age=60"), base).unwrap();
        assert_eq!(w.cache_control.as_deref(), Some("public, max-age=60"));
        assert!(finish(&w).is_ok());
    }

    #[test]
    fn bad_values_are_errors() {
        let mut w = WebConf::new("s".into(), 1);
        let base = Path::new("");
        assert!(directive(&mut w, &dir("index ../x"), base).is_err());
        assert!(directive(&mut w, &dir("app api 127.0.0.1:1"), base).is_err());
        assert!(directive(&mut w, &dir("app /api/"), base).is_err());
        assert!(directive(&mut w, &dir("timeout bogus 1s"), base).is_err());
        let e = directive(&mut w, &dir("rot www"), base).unwrap_err();
        assert!(e.contains("root"), "{e}");
        assert!(finish(&w).unwrap_err().contains("no 'bind'"));
    }
}
