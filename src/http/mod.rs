//! HTTP/1.1 wire parsing, pure and I/O-free: request/response heads and chunked bodies.
pub mod body;
pub mod fuzz_check;
pub mod head;
