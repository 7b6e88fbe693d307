//! lb: an L4/L7 load balancer with the www.foobar.com topology built in.
//!
//! Module map:
//! - `conf`     the conf language: `parse` (text -> sections, `FILE:LINE` errors), `model` (typed `Conf`), `kv` (kv sections)
//! - `runtime`  Conf -> `Snapshot` behind an `ArcSwap`; worker threads; listeners; signals and drain
//! - `listener` socket2 binds with SO_REUSEPORT, accept loops, maxconn permits
//! - `shutdown` open-connection tracking for the SIGTERM drain
//! - `balance`  `Server` state and counters, `Pool` with smooth weighted round robin
//! - `http`     HTTP/1.1 parsing, pure and fuzzed: `head` (strict request/response heads), `body` (chunked decoding)
//! - `l4`       TCP mode: connect with retries, splice(2) both ways with half-close
//! - `kv`       the embedded RESP2 key-value store
//! - `stats`    traffic metrics: prometheus handles per frontend/backend/server, kept across reloads
//! - `accesslog` one line per request or TCP connection, written off the request path
//! - `admin`    the admin listener: /metrics, /stats page and JSON, runtime API

pub mod accesslog;
pub mod admin;
pub mod balance;
pub mod conf;
pub mod http;
pub mod kv;
pub mod l4;
pub mod listener;
pub mod runtime;
pub mod shutdown;
pub mod stats;

pub use runtime::run;
