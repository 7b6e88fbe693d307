//! `balance uri|url_param|hdr(NAME)` (what a request is hashed on) and
//! `hash-type` (how the hash maps to a server); `http::hashkey` computes the
//! key of a request, `balance::Pool` maps it.

/// What a request is hashed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// `balance uri [len N] [depth N] [whole] [path-only]`.
    Uri {
        len: Option<usize>,
        depth: Option<usize>,
        whole: bool,
        path_only: bool,
    },
    /// `balance url_param NAME`: the value of a query parameter.
    UrlParam(String),
    /// `balance hdr(NAME) [use_domain_only]`.
    Hdr { name: String, domain_only: bool },
}

/// `hash-type map-based|consistent [FUNCTION] [avalanche]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashType {
    pub consistent: bool,
    pub func: HashFn,
    pub avalanche: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashFn {
    /// HAProxy's default.
    #[default]
    Sdbm,
    Djb2,
    Crc32,
}

impl HashType {
    /// The hash of `key` under this function.
    pub fn hash(&self, key: &[u8]) -> u64 {
        let h: u32 = match self.func {
            HashFn::Sdbm => key.iter().fold(0u32, |h, &c| {
                u32::from(c)
                    .wrapping_add(h << 6)
                    .wrapping_add(h << 16)
                    .wrapping_sub(h)
            }),
            HashFn::Djb2 => key.iter().fold(5381u32, |h, &c| {
                (h << 5).wrapping_add(h).wrapping_add(u32::from(c))
            }),
            HashFn::Crc32 => crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(key),
        };
        if self.avalanche {
            u64::from(mix(h))
        } else {
            u64::from(h)
        }
    }
}

/// Thomas Wang's 32-bit integer mix, as HAProxy's `full_hash`: nearby keys
/// land far apart. The consistent ring looks keys up mixed, as HAProxy's
/// does, or URIs alike in all but a few bytes would crowd one arc.
pub fn mix(mut a: u32) -> u32 {
    a = (a ^ 61) ^ (a >> 16);
    a = a.wrapping_add(a << 3);
    a ^= a >> 4;
    a = a.wrapping_mul(0x27d4eb2d);
    a ^ (a >> 15)
}

/// `balance ARGS...` for the algorithms that hash a request; `None` when
/// `args[0]` is not one of them.
pub fn parse_balance(args: &[String]) -> Option<Result<HashOn, String>> {
    let b = args.first()?;
    let rest = &args[1..];
    if b == "uri" {
        let mut h = HashOn::Uri {
            len: None,
            depth: None,
            whole: false,
            path_only: false,
        };
        let mut i = 0;
        while i < rest.len() {
            let HashOn::Uri {
                len,
                depth,
                whole,
                path_only,
            } = &mut h
            else {
                break;
            };
            match rest[i].as_str() {
                "len" | "depth" => {
                    let n = match rest.get(i + 1).map(|v| super::parse::number(v, 1, 1 << 20)) {
                        Some(Ok(n)) => n as usize,
                        Some(Err(m)) => return Some(Err(format!("'{}': {m}", rest[i]))),
                        None => return Some(Err(format!("'{}' needs a number", rest[i]))),
                    };
                    if rest[i] == "len" {
                        *len = Some(n);
                    } else {
                        *depth = Some(n);
                    }
                    i += 2;
                }
                "whole" => {
                    *whole = true;
                    i += 1;
                }
                "path-only" => {
                    *path_only = true;
                    i += 1;
                }
                x => {
                    return Some(Err(format!(
                        "'balance uri': unexpected '{x}' (len N, depth N, whole, path-only)"
                    )))
                }
            }
        }
        return Some(Ok(h));
    }
    if b == "url_param" {
        let Some(name) = rest.first() else {
            return Some(Err("'balance url_param' needs a parameter name".into()));
        };
        if let Some(x) = rest.get(1) {
            return Some(Err(format!(
                "'balance url_param {name} {x}' is not implemented (lb hashes the query string's parameter only)"
            )));
        }
        return Some(Ok(HashOn::UrlParam(name.clone())));
    }
    if let Some(name) = b.strip_prefix("hdr(").and_then(|r| r.strip_suffix(')')) {
        if name.is_empty() {
            return Some(Err("'balance hdr()' needs a header name".into()));
        }
        let domain_only = match rest.first().map(String::as_str) {
            None => false,
            Some("use_domain_only") if rest.len() == 1 => true,
            Some(x) => {
                return Some(Err(format!(
                    "'balance {b}': unexpected '{x}' (use_domain_only)"
                )))
            }
        };
        return Some(Ok(HashOn::Hdr {
            name: name.to_ascii_lowercase(),
            domain_only,
        }));
    }
    None
}

/// `hash-type ARGS...`.
pub fn parse_hash_type(args: &[String]) -> Result<HashType, String> {
    let mut t = HashType::default();
    match args.first().map(String::as_str) {
        Some("map-based") => {}
        Some("consistent") => t.consistent = true,
        Some(x) => {
            return Err(format!(
                "unknown method '{x}'{}",
                super::parse::did_you_mean(x, &["map-based", "consistent"])
            ))
        }
        None => return Err("expected 'map-based' or 'consistent'".into()),
    }
    for a in &args[1..] {
        match a.as_str() {
            "sdbm" => t.func = HashFn::Sdbm,
            "djb2" => t.func = HashFn::Djb2,
            "crc32" => t.func = HashFn::Crc32,
            "avalanche" => t.avalanche = true,
            "wt6" | "none" => {
                return Err(format!(
                    "hash function '{a}' is not implemented (sdbm, djb2, crc32)"
                ))
            }
            x => return Err(format!("unexpected '{x}' (sdbm, djb2, crc32, avalanche)")),
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_as_haproxy_writes_them() {
        assert_eq!(
            parse_balance(&w("uri depth 2 whole")),
            Some(Ok(HashOn::Uri {
                len: None,
                depth: Some(2),
                whole: true,
                path_only: false
            }))
        );
        assert_eq!(
            parse_balance(&w("hdr(Host) use_domain_only")),
            Some(Ok(HashOn::Hdr {
                name: "host".into(),
                domain_only: true
            }))
        );
        assert!(parse_balance(&w("url_param id check_post"))
            .unwrap()
            .is_err());
        assert!(parse_balance(&w("roundrobin")).is_none());
        assert!(
            parse_hash_type(&w("consistent djb2 avalanche"))
                .unwrap()
                .consistent
        );
        assert!(parse_hash_type(&w("consistant"))
            .unwrap_err()
            .contains("consistent"));
    }

    #[test]
    fn sdbm_as_haproxy() {
        let t = HashType::default();
        // sdbm("a") = 97.
        assert_eq!(t.hash(b"a"), 97);
        assert_ne!(t.hash(b"/a"), t.hash(b"/b"));
    }
}
