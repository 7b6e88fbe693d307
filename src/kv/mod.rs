//! kv: the embedded RESP2 key-value store (primary/replica). Interface used by the runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::conf::kv::KvConf;

/// One `kv NAME` server: keyspace, replication role, clients.
#[derive(Debug)]
pub struct Kv {
    pub name: String,
}

impl Kv {
    pub fn new(conf: &KvConf) -> Arc<Kv> {
        Arc::new(Kv {
            name: conf.name.clone(),
        })
    }

    /// Starts background work (expiry, replication); called once on a worker.
    pub fn start(self: &Arc<Self>) {}

    /// Serves one client connection until it closes.
    pub async fn serve(self: Arc<Self>, mut sock: TcpStream, _peer: SocketAddr) {
        let _ = sock.write_all(b"-ERR kv is not built yet\r\n").await;
    }
}
