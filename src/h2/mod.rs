//! HTTP/2.

pub mod client;
