//! The embedded web server (nginx's role): one `web` section at run time — its root, how files are opened beneath it, its app routes.
//!
//! - `files`  pure rules: request path -> safe relative path, MIME, dates, ETags, ranges
//! - `server` the connection loop: static GET/HEAD, `/healthz`, app prefixes through `http::proxy::forward`

pub mod files;
pub mod server;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::conf::web::WebConf;
use crate::conf::ConfErrors;
use crate::http::head::HeadLimits;
use crate::snapshot::{FrontendRt, Snapshot};

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
    #[error("web '{name}': app route: {err}")]
    Route { name: String, err: ConfErrors },
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
}

/// The conf text of the proxy used for one `app` route: parsing it (rather than
/// filling the structs by hand) keeps every other setting at its default.
fn route_conf(w: &WebConf, addr: std::net::SocketAddr, limits: HeadLimits) -> String {
    format!(
        "global\n    tune.bufsize {}\n    tune.http.maxhdr {}\n\
         defaults\n    mode http\n    timeout connect {}ms\n    timeout client {}ms\n    timeout server {}ms\n    retries 1\n\
         backend {name}-app\n    server app {addr}\n\
         frontend web-{name}\n    bind 127.0.0.1:0\n    default_backend {name}-app\n    option forwardfor\n\
         \x20   timeout http-keep-alive {}ms\n    timeout http-request {}ms\n",
        limits.max_bytes,
        limits.max_headers,
        w.timeout_connect.as_millis().max(1),
        w.timeout_client.as_millis().max(1),
        w.timeout_server.as_millis().max(1),
        w.timeout_keep_alive.as_millis().max(1),
        w.timeout_request.as_millis().max(1),
        name = w.name,
    )
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
            let text = route_conf(conf, a.addr, limits);
            let c = crate::conf::parse_conf(&format!("<web {} app>", conf.name), &text).map_err(
                |err| WebError::Route {
                    name: conf.name.clone(),
                    err,
                },
            )?;
            let snap = Snapshot::build(c);
            // Named after the web server, so its metrics never mix with a
            // real frontend of the balancer.
            if let Some(fe) = snap.frontends.get(&format!("web-{}", conf.name)) {
                routes.push((a.prefix.clone(), fe.clone()));
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
