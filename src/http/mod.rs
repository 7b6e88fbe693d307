//! HTTP/1.1: parsing (head, body: pure, fuzzed) and the reverse proxy (proxy, upstream, reply).
pub mod body;
pub mod fuzz_check;
pub mod head;
pub mod proxy;
pub mod reply;
pub mod upstream;
