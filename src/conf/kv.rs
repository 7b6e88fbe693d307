//! The `kv NAME` section: settings of one embedded RESP2 key-value server.

use std::net::SocketAddr;

use super::parse::{self, did_you_mean, Directive};

#[derive(Debug, Clone, PartialEq)]
pub struct KvConf {
    pub name: String,
    pub line: usize,
    pub bind: SocketAddr,
    pub line_bind: usize,
    /// Primary to replicate from; `None` = this server is a primary.
    pub replicaof: Option<SocketAddr>,
    /// Password required by AUTH before any other command.
    pub requirepass: Option<String>,
    /// Upper bound on the bytes of keys plus values; writes beyond it get `-OOM`.
    pub maxmemory: Option<u64>,
    /// Longest key accepted.
    pub max_key_bytes: u64,
    /// Longest value accepted (also the RESP bulk length limit).
    pub max_value_bytes: u64,
}

pub const DEFAULT_MAX_KEY_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 512 << 20;

const KEYWORDS: &[&str] = &[
    "bind",
    "replicaof",
    "requirepass",
    "maxmemory",
    "max-key-bytes",
    "max-value-bytes",
];

impl KvConf {
    pub fn new(name: String, line: usize) -> KvConf {
        KvConf {
            name,
            line,
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            line_bind: 0,
            replicaof: None,
            requirepass: None,
            maxmemory: None,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Applies one directive of a `kv` section.
pub fn directive(k: &mut KvConf, d: &Directive) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || -> Result<&str, String> {
        match d.args.len() {
            1 => Err(format!("'{kw}': missing argument")),
            2 => Ok(&d.args[1]),
            _ => Err(format!("'{kw}': unexpected extra argument '{}'", d.args[2])),
        }
    };
    let e = |m: String| format!("'{kw}': {m}");
    match kw {
        "bind" => {
            k.bind = parse::bind_addr(arg()?).map_err(e)?;
            k.line_bind = d.line;
        }
        "replicaof" | "slaveof" => {
            let a = match d.args.len() {
                // Redis writes `replicaof HOST PORT`; we also take HOST:PORT.
                3 => format!("{}:{}", d.args[1], d.args[2]),
                _ => arg()?.to_string(),
            };
            k.replicaof = Some(parse::peer_addr(&a).map_err(e)?);
        }
        "requirepass" => k.requirepass = Some(arg()?.to_string()),
        "maxmemory" => k.maxmemory = Some(parse::size(arg()?).map_err(e)?),
        "max-key-bytes" => k.max_key_bytes = parse::size(arg()?).map_err(e)?.max(1),
        "max-value-bytes" => k.max_value_bytes = parse::size(arg()?).map_err(e)?.max(1),
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in kv section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// Checks a finished `kv` section.
pub fn finish(k: &KvConf) -> Result<(), String> {
    if k.line_bind == 0 {
        return Err(format!("kv '{}' has no 'bind' line", k.name));
    }
    Ok(())
}
