//! Blocking pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN, BZPOPMAX.
//! Served at once when a key has elements (through the non-blocking command,
//! so replicas and the AOF get LPOP / LMOVE / ZPOPMIN as Redis sends them);
//! otherwise the command marks the context blocked and the connection task
//! waits for writes (or the timeout) and runs it again. Inside MULTI they
//! never block, as in Redis.

use std::ops::Range;

use super::command::{lookup, Cmd, Ctx, Spec};
use super::frame::{reply, Argv};
use super::typed::{self, Kind};
use super::value::Value;

/// Redis's timeout argument: seconds as a float, 0 = forever; milliseconds.
pub(super) fn timeout_ms(c: &mut Ctx, s: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    match v {
        None => {
            c.err("ERR timeout is not a float or out of range");
            None
        }
        Some(v) if v < 0.0 => {
            c.err("ERR timeout is negative");
            None
        }
        Some(v) if v * 1000.0 > (i64::MAX / 2) as f64 => {
            c.err("ERR timeout is out of range");
            None
        }
        Some(v) => Some((v * 1000.0).ceil() as u64),
    }
}

/// A request built from parts, to run a non-blocking command in place.
struct Built {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Built {
    fn new(parts: &[&[u8]]) -> Built {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for p in parts {
            let s = buf.len();
            buf.extend_from_slice(p);
            ranges.push(s..buf.len());
        }
        Built { buf, ranges }
    }

    fn argv(&self) -> Argv<'_> {
        Argv {
            buf: &self.buf,
            ranges: &self.ranges,
        }
    }
}

pub(super) fn run(c: &mut Ctx, name: &[u8], parts: &[&[u8]]) {
    if let Some(spec) = lookup(name) {
        let b = Built::new(parts);
        super::command::exec(c, spec, b.argv());
    }
}

pub(super) fn non_empty(c: &mut Ctx, k: &[u8], kind: Kind) -> Result<bool, typed::Replied> {
    if c.retry {
        // Running again for a blocked client: Redis serves only keys of the right
        // type and leaves the client blocked past any other.
        let right = c.live(k).is_some_and(|e| {
            matches!(
                (&e.val, kind),
                (Value::List(_), Kind::List) | (Value::ZSet(_), Kind::ZSet)
            )
        });
        if !right {
            return Ok(false);
        }
    }
    if !typed::check(c, k, kind)? {
        return Ok(false);
    }
    Ok(c.st.db.peek(k).is_some_and(|e| match &e.val {
        Value::List(l) => !l.is_empty(),
        Value::ZSet(z) => !z.is_empty(),
        _ => false,
    }))
}

/// Nothing to pop: block (the caller retries) or, inside MULTI, answer nil.
pub(super) fn nothing(c: &mut Ctx, ms: u64) {
    if c.may_block {
        c.blocked = Some(ms);
    } else {
        reply::nil_array(c.out);
    }
}

/// Runs one blocking command; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    match spec.cmd {
        Cmd::BLPop | Cmd::BRPop | Cmd::BZPopMin | Cmd::BZPopMax => {
            let Some(ms) = timeout_ms(c, a.get(a.len() - 1)) else {
                return true;
            };
            let zset = matches!(spec.cmd, Cmd::BZPopMin | Cmd::BZPopMax);
            let kind = if zset { Kind::ZSet } else { Kind::List };
            for k in a.iter().skip(1).take(a.len() - 2) {
                match non_empty(c, k, kind) {
                    Err(_) => return true,
                    Ok(false) => continue,
                    Ok(true) => {}
                }
                let name: &[u8] = match spec.cmd {
                    Cmd::BLPop => b"LPOP",
                    Cmd::BRPop => b"RPOP",
                    Cmd::BZPopMin => b"ZPOPMIN",
                    _ => b"ZPOPMAX",
                };
                // [key, value] / [key, member, score]: the key, then what the pop answers.
                reply::array(c.out, if zset { 3 } else { 2 });
                reply::bulk(c.out, k);
                let mark = c.out.len();
                run(c, name, &[name, k]);
                if zset && c.out[mark..].starts_with(b"*2\r\n") {
                    c.out.drain(mark..mark + 4);
                }
                return true;
            }
            nothing(c, ms);
        }
        Cmd::BLMove | Cmd::BRPopLPush => {
            let Some(ms) = timeout_ms(c, a.get(a.len() - 1)) else {
                return true;
            };
            let (src, dst) = (a.get(1), a.get(2));
            let (from, to): (&[u8], &[u8]) = if spec.cmd == Cmd::BRPopLPush {
                (b"RIGHT", b"LEFT")
            } else {
                (a.get(3), a.get(4))
            };
            let side_ok =
                |s: &[u8]| s.eq_ignore_ascii_case(b"LEFT") || s.eq_ignore_ascii_case(b"RIGHT");
            if !side_ok(from) || !side_ok(to) {
                c.err(super::command::ERR_SYNTAX);
                return true;
            }
            match non_empty(c, src, Kind::List) {
                Err(_) => {}
                Ok(true) => run(c, b"LMOVE", &[b"LMOVE", src, dst, from, to]),
                Ok(false) => {
                    if c.may_block {
                        c.blocked = Some(ms);
                    } else {
                        reply::nil(c.out);
                    }
                }
            }
        }
        _ => return false,
    }
    true
}
