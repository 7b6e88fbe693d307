//! Parsers of HAProxy lines whose values are structures: `cookie`,
//! `stick-table`, `tcp-check`, `http-check send`, and the check sequences
//! `option redis-check` and `option ssl-hello-chk` stand for.

use std::time::Duration;

use super::model::{CookieConf, CookieMode, Expect, StickTableConf, TableKeyType, TcpCheckStep};
use super::parse::{self, did_you_mean};
use super::sample::TableData;

/// `cookie NAME insert|rewrite|prefix [indirect] [nocache] [httponly] [secure] ...`.
pub fn cookie(a: &[String], line: usize) -> Result<CookieConf, String> {
    let name = a.first().ok_or("'cookie' needs a name")?.clone();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b))
    {
        return Err(format!("invalid cookie name '{name}'"));
    }
    let mut c = CookieConf {
        line,
        name,
        mode: CookieMode::Rewrite,
        indirect: false,
        nocache: false,
        httponly: false,
        secure: false,
        preserve: false,
        domain: Vec::new(),
        attrs: Vec::new(),
        maxage: None,
    };
    let mut mode = None;
    let mut i = 1;
    while i < a.len() {
        let o = a[i].as_str();
        let mut val = || {
            i += 1;
            a.get(i).cloned().ok_or(format!("'{o}' needs a value"))
        };
        match o {
            "insert" | "rewrite" | "prefix" => {
                let m = match o {
                    "insert" => CookieMode::Insert,
                    "rewrite" => CookieMode::Rewrite,
                    _ => CookieMode::Prefix,
                };
                if mode.is_some_and(|x| x != m) {
                    return Err("'insert', 'rewrite' and 'prefix' exclude each other".into());
                }
                mode = Some(m);
            }
            "indirect" => c.indirect = true,
            "nocache" => c.nocache = true,
            "postonly" => {
                return Err("'cookie ... postonly' is not implemented (say 'nocache')".into())
            }
            "httponly" => c.httponly = true,
            "secure" => c.secure = true,
            "preserve" => c.preserve = true,
            "domain" => c.domain.push(val()?),
            "attr" => c.attrs.push(val()?),
            "maxidle" | "maxlife" => {
                let v = val()?;
                c.maxage = Some(parse::duration(&v)?);
            }
            "dynamic" => {
                return Err(
                    "'cookie ... dynamic' is not implemented (give servers 'cookie VALUE')".into(),
                )
            }
            x => {
                return Err(format!(
                    "unknown cookie option '{x}'{}",
                    did_you_mean(
                        x,
                        &[
                            "insert", "rewrite", "prefix", "indirect", "nocache", "httponly",
                            "secure", "preserve", "domain", "attr", "maxidle", "maxlife"
                        ]
                    )
                ))
            }
        }
        i += 1;
    }
    c.mode = mode.unwrap_or(CookieMode::Rewrite);
    Ok(c)
}

/// `stick-table type T [len N] size N [expire T] [nopurge] [peers P] [store D,...]`.
pub fn stick_table(a: &[String], line: usize) -> Result<StickTableConf, String> {
    let mut key = None;
    let mut size = None;
    let mut expire = None;
    let mut store = Vec::new();
    let mut i = 0;
    while i < a.len() {
        let o = a[i].as_str();
        let v = a.get(i + 1).map(String::as_str);
        let need = || v.ok_or(format!("'{o}' needs a value"));
        match o {
            "type" => {
                key = Some(match need()? {
                    "ip" | "ipv6" => TableKeyType::Ip,
                    "string" | "binary" => TableKeyType::String,
                    "integer" => TableKeyType::Integer,
                    t => {
                        return Err(format!(
                            "unknown table type '{t}' (ip, ipv6, integer, string, binary)"
                        ))
                    }
                });
                i += 2;
            }
            "len" => {
                parse::number(need()?, 1, 65535)?;
                i += 2;
            }
            "size" => {
                let n = parse::size(need()?)?;
                if n == 0 || n > 100_000_000 {
                    return Err(format!("table size {n} out of range (1..100000000)"));
                }
                size = Some(n as usize);
                i += 2;
            }
            "expire" => {
                expire = Some(parse::duration(need()?)?);
                i += 2;
            }
            "nopurge" => i += 1,
            "peers" | "srvkey" | "write-to" => i += 2,
            "store" => {
                for item in need()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (name, period) = match item.split_once('(') {
                        Some((n, p)) => {
                            let p = p
                                .strip_suffix(')')
                                .ok_or(format!("'{item}': missing ')'"))?;
                            (n, Some(parse::duration(p)?))
                        }
                        None => (item, None),
                    };
                    let d = TableData::parse(name).ok_or_else(|| {
                        format!(
                            "'store {name}' is not implemented (http_req_rate, http_req_cnt, http_err_rate, conn_cur, conn_cnt, conn_rate, gpc0, gpc0_rate, gpc1)"
                        )
                    })?;
                    let is_rate = name.ends_with("_rate");
                    if is_rate && period.is_none() {
                        return Err(format!("'{name}' needs a period, as in '{name}(10s)'"));
                    }
                    store.push((d, period.unwrap_or(Duration::ZERO)));
                }
                i += 2;
            }
            x => {
                return Err(format!(
                    "unknown stick-table option '{x}'{}",
                    did_you_mean(
                        x,
                        &["type", "size", "expire", "store", "len", "nopurge", "peers"]
                    )
                ))
            }
        }
    }
    Ok(StickTableConf {
        line,
        key: key.ok_or("'stick-table' needs 'type ip|string|integer'")?,
        size: size.ok_or("'stick-table' needs 'size N' (its memory bound)")?,
        expire,
        store,
    })
}

/// Hex digits (`send-binary`, `expect binary`) as bytes.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{s}' is not an even number of hex digits"));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect())
}

/// One `tcp-check` line (after the keyword); `None` for `comment`-only lines.
pub fn step(a: &[String]) -> Result<Option<TcpCheckStep>, String> {
    let verb = a
        .first()
        .map(String::as_str)
        .ok_or("'tcp-check' needs an action")?;
    let rest = &a[1..];
    // `comment TEXT` may follow any step.
    let rest: Vec<&String> = match rest.iter().position(|w| w == "comment") {
        Some(i) => rest[..i].iter().collect(),
        None => rest.iter().collect(),
    };
    Ok(Some(match verb {
        "connect" => {
            let mut port = None;
            let mut i = 0;
            while i < rest.len() {
                match rest[i].as_str() {
                    "port" => {
                        let v = rest.get(i + 1).ok_or("'port' needs a value")?;
                        port = Some(parse::number(v, 1, 65535)? as u16);
                        i += 2;
                    }
                    "linger" | "default" => i += 1,
                    x => return Err(format!("'tcp-check connect {x}' is not implemented")),
                }
            }
            TcpCheckStep::Connect { port }
        }
        "send" | "send-lf" => {
            let v = rest.first().ok_or("'tcp-check send' needs data")?;
            TcpCheckStep::Send(v.as_bytes().to_vec())
        }
        "send-binary" | "send-binary-lf" => {
            let v = rest
                .first()
                .ok_or("'tcp-check send-binary' needs hex data")?;
            TcpCheckStep::Send(hex(v)?)
        }
        "expect" => {
            let mut i = 0;
            let mut negate = false;
            while i < rest.len() {
                match rest[i].as_str() {
                    "min-recv" | "error-status" | "tout-status" | "ok-status" | "on-success"
                    | "on-error" | "status-code" => i += 2,
                    _ => break,
                }
            }
            if rest.get(i).is_some_and(|w| *w == "!") {
                negate = true;
                i += 1;
            }
            let kind = rest
                .get(i)
                .ok_or("'tcp-check expect' needs string, rstring or binary")?;
            let v = rest
                .get(i + 1)
                .ok_or("'tcp-check expect' needs a pattern")?;
            let what = match kind.as_str() {
                "string" => Expect::String(v.as_bytes().to_vec()),
                "rstring" => Expect::Rstring(
                    regex::bytes::Regex::new(v).map_err(|e| format!("bad regex '{v}': {e}"))?,
                ),
                "binary" => Expect::Binary(hex(v)?),
                k => {
                    return Err(format!(
                        "'tcp-check expect {k}' is not implemented (string, rstring, binary)"
                    ))
                }
            };
            TcpCheckStep::Expect { negate, what }
        }
        "comment" => return Ok(None),
        x => {
            return Err(format!(
                "unknown tcp-check action '{x}'{} (connect, send, send-binary, expect)",
                did_you_mean(x, &["connect", "send", "send-binary", "expect"])
            ))
        }
    }))
}

/// `option redis-check`: PING, expect +PONG.
pub fn redis() -> Vec<TcpCheckStep> {
    vec![
        TcpCheckStep::Send(b"PING\r\n".to_vec()),
        TcpCheckStep::Expect {
            negate: false,
            what: Expect::String(b"+PONG".to_vec()),
        },
    ]
}

/// `option mysql-check [user U [post-41|pre-41]]`, as HAProxy 2.6 sends it:
/// without a user, only the server's greeting is read; with one, a login
/// packet (post-41 by default) and COM_QUIT go first, and the login's answer
/// must be OK too. HAProxy's header length for post-41 is kept as it sends it.
pub fn mysql(args: &[String]) -> Result<Vec<TcpCheckStep>, String> {
    let expect = |n| TcpCheckStep::Expect {
        negate: false,
        what: Expect::MysqlPacket(n),
    };
    let Some(first) = args.first() else {
        return Ok(vec![expect(1)]);
    };
    if first != "user" {
        return Err(format!("only 'user' may follow (got '{first}')"));
    }
    let user = args.get(1).ok_or("'user' needs a name")?.as_bytes();
    let post41 = match args.get(2).map(String::as_str) {
        None | Some("post-41") => true,
        Some("pre-41") => false,
        Some(x) => {
            return Err(format!(
                "'{x}': only 'post-41' or 'pre-41' may follow the user"
            ))
        }
    };
    if let Some(x) = args.get(3) {
        return Err(format!("unexpected extra argument '{x}'"));
    }
    let len = user.len() + 7 + if post41 { 27 } else { 0 };
    let mut req = (len as u32).to_le_bytes()[..3].to_vec();
    req.push(1);
    if post41 {
        req.extend([0x00, 0x82, 0x00, 0x00, 0x00, 0x80, 0x00, 0x01, 0x21]);
        req.extend([0u8; 23]);
    } else {
        req.extend([0x00, 0x80, 0x00, 0x00, 0x01]);
    }
    req.extend(user);
    req.extend([0, 0]);
    // COM_QUIT, so the server ends the session cleanly.
    req.extend([0x01, 0x00, 0x00, 0x00, 0x01]);
    Ok(vec![TcpCheckStep::Send(req), expect(1), expect(2)])
}

/// `option pgsql-check user U`: a StartupMessage (protocol 3.0) for U;
/// an Authentication message back (OK or a password request) is up, an
/// ErrorResponse or anything else is down.
pub fn pgsql(args: &[String]) -> Result<Vec<TcpCheckStep>, String> {
    let user = match args {
        [u, name] if u == "user" => name.as_bytes(),
        [u, _, x, ..] if u == "user" => return Err(format!("unexpected extra argument '{x}'")),
        _ => return Err("needs 'user <username>'".into()),
    };
    let len = 4 + 4 + 5 + user.len() + 1 + 1;
    let mut req = (len as u32).to_be_bytes().to_vec();
    req.extend([0x00, 0x03, 0x00, 0x00]);
    req.extend(b"user\0");
    req.extend(user);
    req.extend([0, 0]);
    Ok(vec![
        TcpCheckStep::Send(req),
        TcpCheckStep::Expect {
            negate: false,
            what: Expect::PgsqlAuth,
        },
    ])
}

/// `option ssl-hello-chk`: a TLS ClientHello; a handshake record back is up.
pub fn ssl_hello() -> Vec<TcpCheckStep> {
    // A minimal TLS 1.2 ClientHello offering common ECDHE suites.
    let suites: &[u8] = &[
        0xc0, 0x2f, 0xc0, 0x2b, 0xc0, 0x30, 0xc0, 0x2c, 0xcc, 0xa8, 0xcc, 0xa9,
    ];
    let exts: &[u8] = &[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, // groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // point formats
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, // sigalgs
    ];
    let mut body = vec![0x03, 0x03];
    body.extend([0x5a; 32]);
    body.push(0);
    body.extend((suites.len() as u16).to_be_bytes());
    body.extend(suites);
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    vec![
        TcpCheckStep::Send(rec),
        TcpCheckStep::Expect {
            negate: false,
            what: Expect::Binary(vec![0x16, 0x03]),
        },
    ]
}

/// `http-check send [meth M] [uri U] [ver V] [hdr N V]...`.
#[allow(clippy::type_complexity)]
pub fn http_check_send(
    a: &[String],
) -> Result<(Option<String>, Option<String>, Vec<(String, String)>), String> {
    let (mut meth, mut uri, mut hdrs) = (None, None, Vec::new());
    let mut i = 0;
    while i < a.len() {
        let v = |k: usize| {
            a.get(i + k)
                .cloned()
                .ok_or(format!("'{}' needs a value", a[i]))
        };
        match a[i].as_str() {
            "meth" => meth = Some(v(1)?),
            "uri" => {
                let u = v(1)?;
                if !u.starts_with('/') {
                    return Err(format!("'uri {u}' must start with '/'"));
                }
                uri = Some(u)
            }
            "ver" => {}
            "hdr" => {
                hdrs.push((v(1)?, v(2)?));
                i += 1;
            }
            "body" | "body-lf" | "uri-lf" => {
                return Err(format!("'http-check send {}' is not implemented", a[i]))
            }
            x => return Err(format!("'http-check send': unexpected '{x}'")),
        }
        i += 2;
    }
    Ok((meth, uri, hdrs))
}
