//! HTTP/2 with the `h2` crate: stream primitives the request pipeline works
//! with (`stream`), and the connection driver toward clients (`server`).

pub mod server;
pub mod stream;

pub use stream::{H2Stream, SendError};
