//! The embedded web server (nginx's role): one `web` section at run time — its root, how files are opened beneath it, its app routes.
//!
//! - `files`  pure rules: request path -> safe relative path, MIME, dates, ETags, ranges
//! - `server` the connection loop: static GET/HEAD, `/healthz`, app prefixes through `http::proxy::forward`
//! - `h2`      the same answers to HTTP/2 streams
//! - `metrics` `lb_web_*`: static answers counted, forwards read from the route's frontend

pub mod files;
pub mod h2;
pub mod metrics;
pub mod server;

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conf::model::{
    Bind, ClientLimits, FrontendHttp, ServerOpts, DEFAULT_LIMIT_TABLE_SIZE, DEFAULT_MAXCONN,
    DEFAULT_SSL_CACHE_SIZE, DEFAULT_TIMEOUT_HTTP_REQUEST,
};
use crate::conf::web::WebConf;
use crate::conf::{Backend, Balance, Frontend, Mode, Reuse, ServerConf};
use crate::http::head::HeadLimits;
use crate::snapshot::{BackendRt, FrontendRt};

/// Why a `web` section cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("web '{name}': root {path}: {err}")]
    Root {
        name: String,
        path: String,
        err: io::Error,
    },
    #[error("web '{name}': root {path} is not a directory")]
    NotDir { name: String, path: String },
}

/// One `web` section, ready to serve.
#[derive(Debug)]
pub struct Web {
    pub conf: WebConf,
    /// The canonical root (symlinks resolved), for the fallback opener.
    root: PathBuf,
    root_fd: OwnedFd,
    /// `app` prefixes, longest first, each with a one-server frontend for `proxy::forward`.
    pub routes: Vec<(String, Arc<FrontendRt>)>,
    pub limits: HeadLimits,
    /// Header lines every response carries: `server`, `x-served-by`.
    pub common: Vec<u8>,
    /// `cache-control: ...\r\n` for static files, or empty.
    pub cache_line: Vec<u8>,
    /// Counters of this section (by name, kept across reloads).
    pub stats: Arc<metrics::WebStats>,
}

/// The proxy of one `app` route: a frontend (named after the web server, so
/// its metrics never mix with a real frontend of the balancer) with a
/// one-server backend; what the `web` section does not set is at the
/// balancer's defaults.
fn route_proxy(w: &WebConf, addr: SocketAddr, limits: HeadLimits) -> Arc<FrontendRt> {
    // Whole milliseconds, at least one, as the conf language has them.
    let ms = |d: Duration| Duration::from_millis(d.as_millis().max(1) as u64);
    let server = ServerConf {
        name: "app".into(),
        line: 0,
        addr,
        host: addr.ip().to_string(),
        opts: ServerOpts::default(),
    };
    let backend = Backend {
        name: format!("{}-app", w.name),
        line: 0,
        mode: Mode::Http,
        balance: Balance::RoundRobin,
        servers: vec![server],
        retries: 1,
        timeout_connect: ms(w.timeout_connect),
        timeout_server: ms(w.timeout_server),
        redispatch: false,
        forwardfor: false,
        reuse: Reuse::Safe,
        allbackups: false,
        httpchk: None,
        grpc_check: None,
        timeout_check: None,
        hap: Default::default(),
    };
    let timeout_client = ms(w.timeout_client);
    let frontend = Frontend {
        name: metrics::route_frontend(&w.name),
        line: 0,
        mode: Mode::Http,
        // Not listened on: it names the address a Host-less request reached.
        binds: vec![Bind {
            line: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            h2: false,
            hap: Default::default(),
        }],
        default_backend: Some(backend.name.clone()),
        maxconn: DEFAULT_MAXCONN,
        timeout_client,
        http: FrontendHttp {
            timeout_request: ms(w.timeout_request),
            timeout_keep_alive: ms(w.timeout_keep_alive),
            forwardfor: true,
            max_body: None,
            acls: Vec::new(),
            use_backends: Vec::new(),
            rules: Vec::new(),
            timeout_handshake: DEFAULT_TIMEOUT_HTTP_REQUEST.min(timeout_client),
            body: Default::default(),
        },
        tcp_rules: Vec::new(),
        client_limits: ClientLimits {
            conn: None,
            rate: None,
            http_req_rate: None,
            table_size: DEFAULT_LIMIT_TABLE_SIZE,
        },
        hap: Default::default(),
    };
    let backends = HashMap::from([(backend.name.clone(), Arc::new(BackendRt::new(backend)))]);
    Arc::new(FrontendRt::new(
        frontend,
        &backends,
        limits,
        DEFAULT_SSL_CACHE_SIZE,
    ))
}

impl Web {
    pub fn new(conf: &WebConf, limits: HeadLimits) -> Result<Web, WebError> {
        let root_err = |err| WebError::Root {
            name: conf.name.clone(),
            path: conf.root.display().to_string(),
            err,
        };
        let root = std::fs::canonicalize(&conf.root).map_err(root_err)?;
        if !root.is_dir() {
            return Err(WebError::NotDir {
                name: conf.name.clone(),
                path: conf.root.display().to_string(),
            });
        }
        let dir = File::open(&root).map_err(root_err)?;
        let mut routes = Vec::new();
        for a in &conf.apps {
            routes.push((a.prefix.clone(), route_proxy(conf, a.addr, limits)));
        }
        let stats = metrics::web(&conf.name);
        if let Ok(mut r) = stats.routes.lock() {
            *r = conf
                .apps
                .iter()
                .map(|a| (a.prefix.clone(), a.addr))
                .collect();
        }
        if conf.bind.port() != 0 {
            if let Ok(mut b) = stats.bind.lock() {
                *b = Some(conf.bind);
            }
        }
        let common = format!("server: lb\r\nx-served-by: {}\r\n", conf.name).into_bytes();
        let cache_line = conf
            .cache_control
            .as_ref()
            .map(|c| format!("cache-control: {c}\r\n").into_bytes())
            .unwrap_or_default();
        Ok(Web {
            conf: conf.clone(),
            root,
            root_fd: dir.into(),
            routes,
            limits,
            common,
            cache_line,
            stats,
        })
    }

    /// The app route for a request path, if any.
    pub fn route(&self, path: &[u8]) -> Option<&FrontendRt> {
        self.routes
            .iter()
            .find(|(p, _)| path.starts_with(p.as_bytes()))
            .map(|(_, fe)| &**fe)
    }

    /// Opens `rel` (NUL-terminated, from `files::resolve`) read-only beneath the
    /// root. The kernel refuses any resolution that leaves the root, `..` or
    /// symlinks included (openat2 with RESOLVE_BENEATH); without openat2 the
    /// canonical path must lie under the canonical root.
    pub fn open(&self, rel: &CStr) -> io::Result<File> {
        static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
        let path = if rel.is_empty() { c"." } else { rel };
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            // SAFETY: open_how is a plain C struct; all-zero is a valid value.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
            // SAFETY: valid dirfd, NUL-terminated path, and a correctly sized open_how.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.root_fd.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: the kernel just returned this descriptor to us.
                return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            NO_OPENAT2.store(true, Ordering::Relaxed);
        }
        open_canonical(&self.root, path)
    }
}

/// The opener for kernels without openat2: the canonical path (symlinks
/// resolved) must lie under the canonical `root`, else EXDEV. A symlink swapped
/// in between the check and the open is the gap openat2 closes.
fn open_canonical(root: &std::path::Path, rel: &CStr) -> io::Result<File> {
    let full = root
        .join(std::ffi::OsStr::from_bytes(rel.to_bytes()))
        .canonicalize()?;
    if !full.starts_with(root) {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A root with a file, an inner symlink, and symlinks out to a sentinel.
    fn tree(tag: &str) -> (crate::testutil::TempDir, PathBuf) {
        let base = crate::testutil::TempDir::new(tag);
        let root = base.join("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::fs::write(root.join("f.txt"), "f").unwrap();
        symlink("f.txt", root.join("in")).unwrap();
        symlink(base.join("secret"), root.join("out")).unwrap();
        symlink("..", root.join("up")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        (base, root)
    }

    fn both(root: &std::path::Path, web: &Web, rel: &CStr) -> [Option<i32>; 2] {
        let code = |r: io::Result<File>| r.err().map(|e| e.raw_os_error().unwrap_or(-1));
        [code(open_canonical(root, rel)), code(web.open(rel))]
    }

    /// The route proxy is what the conf text `web` used to generate and
    /// parse would give (line numbers aside): the same defaults, timeouts
    /// and limits.
    #[test]
    fn route_proxy_matches_its_conf_text() {
        let mut w = WebConf::new("w".into(), 1);
        w.timeout_client = Duration::from_micros(2500);
        w.timeout_server = Duration::from_secs(7);
        w.timeout_request = Duration::from_millis(0);
        let addr: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let limits = HeadLimits {
            max_bytes: 9000,
            max_headers: 20,
        };
        let ms = |d: Duration| d.as_millis().max(1);
        let text = format!(
            "global\n    tune.bufsize {}\n    tune.http.maxhdr {}\n\
             defaults\n    mode http\n    timeout connect {}ms\n    timeout client {}ms\n    timeout server {}ms\n    retries 1\n\
             backend w-app\n    server app {addr}\n\
             frontend web-w\n    bind 127.0.0.1:0\n    default_backend w-app\n    option forwardfor\n\
             \x20   timeout http-keep-alive {}ms\n    timeout http-request {}ms\n",
            limits.max_bytes,
            limits.max_headers,
            ms(w.timeout_connect),
            ms(w.timeout_client),
            ms(w.timeout_server),
            ms(w.timeout_keep_alive),
            ms(w.timeout_request),
        );
        let parsed = crate::snapshot::Snapshot::build(crate::conf::parse_conf("t", &text).unwrap());
        let want = &parsed.frontends["web-w"];
        let got = route_proxy(&w, addr, limits);
        let unlined = |fe: &FrontendRt| {
            let mut f = fe.conf.clone();
            f.line = 0;
            f.binds.iter_mut().for_each(|b| b.line = 0);
            let mut b = fe.backend.as_ref().unwrap().conf.clone();
            b.line = 0;
            b.servers.iter_mut().for_each(|s| s.line = 0);
            (f, b, fe.limits, fe.bound.clone())
        };
        assert_eq!(unlined(&got), unlined(want));
    }

    #[test]
    fn openers_stay_beneath_the_root() {
        let (_base, root) = tree("open");
        let mut conf = WebConf::new("w".into(), 1);
        conf.root = root.clone();
        let web = Web::new(&conf, HeadLimits::default()).unwrap();
        assert_eq!(both(&root, &web, c"f.txt"), [None, None]);
        assert_eq!(both(&root, &web, c"in"), [None, None]);
        assert_eq!(both(&root, &web, c""), [None, None]);
        for escape in [c"out", c"up/secret", c"../secret"] {
            assert_eq!(
                both(&root, &web, escape),
                [Some(libc::EXDEV), Some(libc::EXDEV)],
                "{escape:?}"
            );
        }
        assert_eq!(
            both(&root, &web, c"missing"),
            [Some(libc::ENOENT), Some(libc::ENOENT)]
        );
    }
}
