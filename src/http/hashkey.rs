//! The hash of a request under `balance uri|url_param|hdr(NAME)`, cut as
//! HAProxy cuts it (`len`, `depth`, `whole`, `path-only`, `use_domain_only`);
//! `balance::Pool` maps it to a server.

use super::head::{RequestHead, TargetForm};
use crate::conf::haproxy_hash::HashOn;
use crate::conf::Balance;
use crate::snapshot::BackendRt;

/// `None` when the backend does not hash requests, or the request has nothing
/// to hash (no such parameter or header): then round robin, as HAProxy.
pub(crate) fn key(be: &BackendRt, req: &RequestHead) -> Option<u64> {
    if be.conf.balance != Balance::Hash {
        return None;
    }
    let how = be.conf.hap.hash_on.as_ref()?;
    let part = part(how, req)?;
    Some(be.conf.hap.hash_type.hash(part))
}

/// The bytes hashed.
fn part<'a>(how: &HashOn, req: &'a RequestHead) -> Option<&'a [u8]> {
    match how {
        HashOn::Uri {
            len,
            depth,
            whole,
            path_only,
        } => {
            let mut uri = req.target();
            if *path_only && req.form == TargetForm::Absolute {
                // From the path on: past "scheme://authority".
                let after = uri
                    .windows(3)
                    .position(|w| w == b"://")
                    .map_or(uri, |i| &uri[i + 3..]);
                uri = after
                    .iter()
                    .position(|&b| b == b'/' || b == b'?')
                    .map_or(&b""[..], |i| &after[i..]);
            }
            let max = len.map_or(uri.len(), |l| l.min(uri.len()));
            let mut n = 0;
            let mut slashes = 0;
            while n < max {
                match uri[n] {
                    b'/' => {
                        slashes += 1;
                        // HAProxy stops at the slash past `depth` levels.
                        if depth.is_some_and(|d| slashes == d + 1) {
                            break;
                        }
                    }
                    b'?' if !whole => break,
                    _ => {}
                }
                n += 1;
            }
            Some(&uri[..n])
        }
        HashOn::UrlParam(name) => {
            let t = req.target();
            let q = &t[t.iter().position(|&b| b == b'?')? + 1..];
            q.split(|&b| b == b'&').find_map(|kv| {
                kv.strip_prefix(name.as_bytes())
                    .and_then(|r| r.strip_prefix(b"="))
            })
        }
        HashOn::Hdr { name, domain_only } => {
            let v = req.header(name)?.trim_ascii();
            if v.is_empty() {
                return None;
            }
            if !domain_only {
                return Some(v);
            }
            // "haproxy.1wt.eu" hashes "1wt": the label before the last one.
            let host = v.split(|&b| b == b':').next().unwrap_or(v);
            let labels: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
            Some(if labels.len() >= 2 {
                labels[labels.len() - 2]
            } else {
                host
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, HeadLimits};

    fn req(target: &str) -> RequestHead {
        let mut b = bytes::BytesMut::from(
            format!("GET {target} HTTP/1.1\r\nHost: www.example.com:80\r\n\r\n").as_str(),
        );
        parse_request(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap()
    }

    fn uri(depth: Option<usize>, len: Option<usize>, whole: bool) -> HashOn {
        HashOn::Uri {
            len,
            depth,
            whole,
            path_only: false,
        }
    }

    #[test]
    fn cut_as_haproxy() {
        let r = req("/a/b/c?x=1&id=42");
        assert_eq!(part(&uri(None, None, false), &r), Some(&b"/a/b/c"[..]));
        assert_eq!(
            part(&uri(None, None, true), &r),
            Some(&b"/a/b/c?x=1&id=42"[..])
        );
        assert_eq!(part(&uri(Some(2), None, false), &r), Some(&b"/a/b"[..]));
        assert_eq!(part(&uri(None, Some(3), false), &r), Some(&b"/a/"[..]));
        assert_eq!(part(&HashOn::UrlParam("id".into()), &r), Some(&b"42"[..]));
        assert_eq!(part(&HashOn::UrlParam("no".into()), &r), None);
        let h = |d| HashOn::Hdr {
            name: "host".into(),
            domain_only: d,
        };
        assert_eq!(part(&h(false), &r), Some(&b"www.example.com:80"[..]));
        assert_eq!(part(&h(true), &r), Some(&b"example"[..]));
        let a = req("http://www.example.com:80/p/q?z");
        let po = HashOn::Uri {
            len: None,
            depth: None,
            whole: false,
            path_only: true,
        };
        assert_eq!(part(&po, &a), Some(&b"/p/q"[..]));
    }
}
