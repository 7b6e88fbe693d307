//! HTTP/2.

pub mod client;
pub mod forward;
pub mod stream;
