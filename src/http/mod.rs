//! HTTP/1.1: parsing (head, body: pure, fuzzed), the server connection driver (driver), the reverse proxy (proxy, upstream, reply).
pub mod body;
pub mod driver;
pub mod fuzz_check;
pub mod head;
pub mod proxy;
pub mod reply;
pub mod upstream;
