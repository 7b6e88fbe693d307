//! HTTP/2 with the `h2` crate: stream primitives the request pipeline works
//! with (`stream`), the connection driver toward clients (`server`), the
//! pool of connections to servers (`client`) and the request and response
//! conversions for them (`forward`).

pub mod batch;
pub mod client;
pub mod forward;
pub mod rewind;
pub mod server;
pub mod stream;

pub use stream::{H2Stream, SendError};
