//! HTTP: parsing (head, body: pure, fuzzed), the request pipeline and its parts,
//! the HTTP/1 server connection driver (driver) and the proxy on it (proxy),
//! the server-side keep-alive pool (upstream), replies.
pub mod body;
pub mod compress;
pub mod conn;
pub mod downstream;
pub mod driver;
pub mod errorfile;
pub mod fuzz_check;
pub mod h2side;
pub mod hashkey;
pub mod head;
pub mod pipeline;
pub mod proxy;
pub mod relay;
pub mod reply;
pub mod rewrite;
pub mod rules;
pub mod tally;
pub mod upload;
/// The server-side keep-alive pool lives with the dialer, which takes from it.
pub use crate::dial::idle as upstream;
pub mod upstream_h2;
