//! lb: an L4/L7 load balancer with the www.foobar.com topology built in.
//!
//! Module map:
//! - `conf`     the conf language: `parse` (text -> sections, `FILE:LINE` errors), `model` (typed `Conf`), `acl`, `tls`, `kv`, `web`, `app`
//! - `runtime`  Conf -> `Snapshot` behind an `ArcSwap`; worker threads; listeners; signals and drain
//! - `limit`    per-client-address limits: bounded, sharded counters of connections and rates
//! - `listener` socket2 binds with SO_REUSEPORT, accept loops, maxconn permits
//! - `shutdown` open-connection tracking for the SIGTERM drain
//! - `balance`  `Server` state and counters, `Pool` (roundrobin, leastconn, source, random), `health` checks
//! - `edge`     tcp-request reject rules and per-address connection limits at accept (closed before any read)
//! - `http`     HTTP/1.1: `head`/`body` parsing (pure, fuzzed), `proxy` (per-connection loop), `upstream` (keep-alive pool), `reply`
//! - `clock`    `Instant::now()` read once per connection-task poll on the request path
//! - `io`       a connection as the proxy sees it: plain TCP or TLS, and the tunnel between two
//! - `tls`      rustls configurations: SNI certificate store per bind, connectors to TLS servers
//! - `l4`       TCP mode: connect with retries, splice(2) both ways with half-close
//! - `kv`       the embedded RESP2 key-value store
//! - `stats`    traffic metrics: prometheus handles per frontend/backend/server, kept across reloads
//! - `accesslog` one line per request or TCP connection, written off the request path
//! - `admin`    the admin listener: /metrics, /stats page and JSON, runtime API
//! - `web`      the embedded web server (nginx role): static files, `/healthz`, app prefixes via `http::proxy::forward`
//! - `app`      the embedded foobar application (gunicorn role): JSON API over the kv tier, read-your-writes

pub mod accesslog;
pub mod admin;
pub mod app;
pub mod balance;
pub mod buffer;
pub mod clock;
pub mod conf;
pub mod connect;
pub mod control;
pub mod dial;
pub mod edge;
pub mod http;
pub mod io;
pub mod kv;
pub mod l4;
pub mod limit;
pub mod listener;
pub mod runtime;
pub mod shutdown;
pub mod snapshot;
pub mod stats;
pub mod tls;
pub mod tunnel;
pub mod uring;
pub mod web;

#[doc(hidden)]
pub mod testutil;

pub use runtime::run;
