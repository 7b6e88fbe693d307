//! lb: an L4/L7 load balancer with the www.foobar.com topology built in.
//!
//! Module map, by layer from the bottom; a module imports only its own layer or
//! those below it (`grep -rn "use crate::" src/` shows it).
//!
//! Base, under everything:
//! - `conf`      the conf language: `parse` (text -> sections, `FILE:LINE` errors), `model` (typed `Conf`), `acl`, `sample` (fetches, log-format), `rules` (http-request/response), `haproxy` (HAProxy-only keywords; `haproxy_comp`, `haproxy_hash`, `haproxy_dns`), `tls`, `kv`, `web`, `app`
//! - `clock`     `Instant::now()` read once per connection-task poll on the request path
//! - `shutdown`  the drain flag and open-connection tracking for SIGTERM
//! - `stats`     traffic metrics: prometheus handles per frontend/backend/server, kept across reloads
//! - `accesslog` one line per request or TCP connection, written off the request path
//! - `limit`     per-client-address limits: bounded, sharded counters of connections and rates
//! - `stick`     HAProxy stick tables: bounded per-key counters (`track-sc0`, `sc_*`/`src_*` fetches)
//! - `buffer`    read buffers: a per-worker stack of spares, counted for /metrics
//! - `fdlimit`   file descriptors: the open-file limit raised, maxconn fitted to it, local shortages told from server failures
//!
//! Transport:
//! - `uring`     io_uring for plain HTTP sockets, one ring per worker thread
//! - `io`        a connection as the proxy sees it: plain TCP (epoll or the ring) or TLS
//! - `tls`       rustls configurations: SNI certificate store per bind, connectors to TLS servers
//! - `listener`  socket2 binds with SO_REUSEPORT, accept loops, maxconn permits
//! - `tunnel`    bytes both ways between two connections: splice(2) or a copy, half-close, idle timeout
//! - `connect`   one connection to an address: TCP connect, then TLS through a connector
//! - `proxy_proto` the PROXY protocol header: written for `send-proxy` servers, read on `accept-proxy` binds
//!
//! HTTP codec: `http::head`, `http::body` (parsing, pure, fuzzed), `http::reply` (canned answers),
//! `h2::stream` (an HTTP/2 stream as the pipeline sees it), `h2::forward` (requests and
//! responses to HTTP/2 servers: lb's HTTP/1-shaped heads converted, bodies under flow control).
//!
//! Proxy state:
//! - `balance`   `Server` state and counters, `Pool` (roundrobin, leastconn, source, random, hash, first), `health` checks, `grpc_check` (checks over HTTP/2), `resolvers` (servers from DNS at run time)
//! - `snapshot`  `Snapshot` (conf -> per-proxy `FrontendRt`/`BackendRt`, with constructors) and `Live`, the current one
//! - `edge`      tcp-request reject rules and per-address limits at accept (closed before any read)
//!
//! Dialer:
//! - `dial`      pick a server, retries and redispatch, connect, TLS, passive health; `dial::idle` keep-alive pool (`http::upstream`)
//! - `h2::client` HTTP/2 server connections per worker and server, streams multiplexed up to the server's limit
//!
//! Request pipeline: `http::pipeline` (one exchange in named phases) with `http::{conn, downstream, upload, relay, rewrite, tally, compress, hashkey, errorfile}`
//! and `http::h2side` (its send and relay phases for a client on an HTTP/2 stream);
//! `http::upstream_h2` its connect-to-relay phases for HTTP/2 servers.
//!
//! Protocol drivers:
//! - `http::driver` one HTTP/1 connection (keep-alive, deadlines, drain, 100-continue, errors) for the proxy, web, app, admin
//! - `http::proxy` the proxy as an HTTP/1 service: each request through the pipeline
//! - `h2::server` one HTTP/2 connection toward clients (limits, idle, drain, abuse) for the proxy and web; `h2::rewind` hands it an h2c connection the HTTP/1 driver recognised
//! - `l4`        TCP mode: a dialed connection, then the tunnel, counted and logged
//!
//! Services:
//! - `control`   what the runtime lends a service: live snapshot, reload, counters, stop signal
//! - `kv`        the embedded RESP2 key-value store
//! - `admin`     the admin listener: /metrics, /stats page and JSON, runtime API
//! - `web`       the embedded web server (nginx role): static files, `/healthz`, app prefixes through the pipeline; HTTP/1 and h2c
//! - `vrrp`      VRRPv3 virtual routers (keepalived-compatible): adverts, state machine, addresses by netlink
//! - `app`       the embedded foobar application (gunicorn role): JSON API over the kv tier, read-your-writes, primary found through sentinels
//! - `sentinel`  Redis Sentinel: watches kv/Redis primaries, elects a leader per epoch, fails over, Sentinel protocol (uses `app::kvclient`)
//!
//! Top:
//! - `runtime`   Conf -> `Snapshot` swapped on reload; worker threads; listeners; signals and drain

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
pub mod fdlimit;
pub mod h2;
pub mod http;
pub mod io;
pub mod kv;
pub mod l4;
pub mod limit;
pub mod listener;
pub mod proxy_proto;
pub mod runtime;
pub mod sentinel;
pub mod shutdown;
pub mod snapshot;
pub mod stats;
pub mod stick;
pub mod tls;
pub mod tunnel;
pub mod uring;
pub mod vrrp;
pub mod web;

#[doc(hidden)]
pub mod testutil;

pub use runtime::run;
