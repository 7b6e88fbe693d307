//! More keyspace commands, as Redis 7.0 answers them: GETEX, INCRBYFLOAT,
//! SETRANGE, GETRANGE/SUBSTR, MSETNX, RENAME/RENAMENX, COPY, TOUCH,
//! EXPIRETIME/PEXPIRETIME, RANDOMKEY, OBJECT, MEMORY USAGE.

use super::command::{wrong_arity, Cmd, Ctx, Spec, ERR_NOT_INT, ERR_SYNTAX, ERR_TOO_BIG};
use super::db::ENTRY_OVERHEAD;
use super::frame::{fmt_i64, parse_i64, reply, Argv};

const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";

/// Runs one of this file's commands; false if `spec` is not one of them.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    match spec.cmd {
        Cmd::GetEx => getex(c, a),
        Cmd::IncrByFloat => incrbyfloat(c, a.get(1), a.get(2)),
        Cmd::SetRange => setrange(c, a.get(1), a.get(2), a.get(3)),
        Cmd::GetRange | Cmd::Substr => getrange(c, a.get(1), a.get(2), a.get(3)),
        Cmd::MSetNx => msetnx(c, a),
        Cmd::Rename | Cmd::RenameNx => rename(c, a.get(1), a.get(2), spec.cmd == Cmd::RenameNx),
        Cmd::Copy => copy(c, a),
        Cmd::Touch => {
            let n = a.iter().skip(1).filter(|k| c.exists(k)).count();
            reply::int(c.out, n as i64);
        }
        Cmd::ExpireTime | Cmd::PExpireTime => {
            let v = match c.live(a.get(1)) {
                None => -2,
                Some(e) if e.exp == 0 => -1,
                Some(e) if spec.cmd == Cmd::PExpireTime => e.exp as i64,
                Some(e) => (e.exp as i64 + 500) / 1000,
            };
            reply::int(c.out, v);
        }
        Cmd::RandomKey => randomkey(c),
        Cmd::Object => object(c, a),
        Cmd::Memory => memory(c, a),
        Cmd::Debug => super::debug::debug(c, a),
        Cmd::Dump => super::dump::dump(c, a),
        Cmd::Restore => super::dump::restore(c, a),
        Cmd::SwapDb => super::select::swapdb(c, a),
        Cmd::Move => super::select::move_key(c, a),
        Cmd::Time => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            reply::array(c.out, 2);
            reply::bulk(c.out, now.as_secs().to_string().as_bytes());
            reply::bulk(c.out, now.subsec_micros().to_string().as_bytes());
        }
        _ => return false,
    }
    true
}

/// Redis's float parsing for INCRBYFLOAT: no spaces, no NaN.
fn parse_float(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Human float formatting, as Redis's `LD_STR_HUMAN`: no exponent, no trailing zeros, no -0.
pub fn fmt_float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    format!("{v}")
}

fn getex(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    // (seconds, relative, value) or persist
    let mut exp: Option<(bool, bool, &[u8])> = None;
    let mut persist = false;
    let mut i = 2;
    while i < a.len() {
        let o = a.get(i);
        let next = (i + 1 < a.len()).then(|| a.get(i + 1));
        if o.eq_ignore_ascii_case(b"PERSIST") && exp.is_none() && !persist {
            persist = true;
        } else if let (Some(n), None, false) = (next, exp, persist) {
            let kind = if o.eq_ignore_ascii_case(b"EX") {
                (true, true)
            } else if o.eq_ignore_ascii_case(b"PX") {
                (false, true)
            } else if o.eq_ignore_ascii_case(b"EXAT") {
                (true, false)
            } else if o.eq_ignore_ascii_case(b"PXAT") {
                (false, false)
            } else {
                return c.err(ERR_SYNTAX);
            };
            exp = Some((kind.0, kind.1, n));
            i += 1;
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 1;
    }
    let mut at = 0i64;
    if let Some((seconds, relative, n)) = exp {
        let Some(n) = parse_i64(n) else {
            return c.err(ERR_NOT_INT);
        };
        match (n > 0)
            .then(|| super::command::absolute_ms(n, seconds, relative, c.now))
            .flatten()
        {
            Some(ms) if ms > 0 => at = ms,
            _ => return c.err("ERR invalid expire time in 'getex' command"),
        }
    }
    let Some((had_ttl, val)) = c.live(k).map(|e| (e.exp != 0, e.val.bytes().to_vec())) else {
        return reply::nil(c.out);
    };
    reply::bulk(c.out, &val);
    if exp.is_some() {
        if at as u64 <= c.now && !c.from_master && !c.st.repl.is_replica {
            c.st.db.remove(k);
            c.propagate(&[b"DEL", k]);
        } else {
            c.st.db.set_expiry(k, at as u64);
            let mut b = [0u8; 20];
            let ms = fmt_i64(at, &mut b);
            c.propagate(&[b"PEXPIREAT", k, ms]);
        }
    } else if persist && had_ttl {
        c.st.db.set_expiry(k, 0);
        c.propagate(&[b"PERSIST", k]);
    }
}

fn incrbyfloat(c: &mut Ctx, k: &[u8], by: &[u8]) {
    let cur = match c.live(k) {
        None => 0.0,
        Some(e) => match parse_float(e.val.bytes()) {
            Some(v) => v,
            None => return c.err(ERR_NOT_FLOAT),
        },
    };
    let Some(by) = parse_float(by) else {
        return c.err(ERR_NOT_FLOAT);
    };
    let new = cur + by;
    if !new.is_finite() {
        return c.err("ERR increment would produce NaN or Infinity");
    }
    if !c.key_ok(k) {
        return;
    }
    let s = fmt_float(new);
    let exists = c.exists(k);
    c.st.db
        .set(k, s.as_bytes(), if exists { None } else { Some(0) });
    // As Redis: replicated as SET KEEPTTL so replicas get the exact same value.
    c.propagate(&[b"SET", k, s.as_bytes(), b"KEEPTTL"]);
    reply::bulk(c.out, s.as_bytes());
}

fn setrange(c: &mut Ctx, k: &[u8], off: &[u8], v: &[u8]) {
    let Some(off) = parse_i64(off) else {
        return c.err(ERR_NOT_INT);
    };
    if off < 0 {
        return c.err("ERR offset is out of range");
    }
    let len = c.live(k).map(|e| e.val.bytes().len());
    if v.is_empty() {
        return reply::int(c.out, len.unwrap_or(0) as i64);
    }
    let end = off as u64 + v.len() as u64;
    if end > c.kv.conf.max_value_bytes && !c.from_master {
        return c.err(ERR_TOO_BIG);
    }
    if !c.key_ok(k) {
        return;
    }
    let off = off as usize;
    let write = |val: &mut Vec<u8>| {
        if val.len() < off + v.len() {
            val.resize(off + v.len(), 0);
        }
        val[off..off + v.len()].copy_from_slice(v);
    };
    match len {
        Some(_) => c.st.db.update(k, write),
        None => {
            let mut val = Vec::new();
            write(&mut val);
            c.st.db.set(k, &val, Some(0));
        }
    }
    let n = c.live(k).map_or(0, |e| e.val.bytes().len());
    let mut b = [0u8; 20];
    c.propagate(&[b"SETRANGE", k, fmt_i64(off as i64, &mut b), v]);
    reply::int(c.out, n as i64);
}

fn getrange(c: &mut Ctx, k: &[u8], start: &[u8], end: &[u8]) {
    let (Some(mut start), Some(mut end)) = (parse_i64(start), parse_i64(end)) else {
        return c.err(ERR_NOT_INT);
    };
    let Some(val) = c.live(k).map(|e| e.val.bytes().to_vec()) else {
        return reply::bulk(c.out, b"");
    };
    let len = val.len() as i64;
    if start < 0 && end < 0 && start > end {
        return reply::bulk(c.out, b"");
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return reply::bulk(c.out, b"");
    }
    reply::bulk(c.out, &val[start as usize..=end as usize]);
}

fn msetnx(c: &mut Ctx, a: Argv) {
    if a.len().is_multiple_of(2) {
        return wrong_arity(c.out, "msetnx");
    }
    let keys: Vec<&[u8]> = a.iter().skip(1).step_by(2).collect();
    for k in &keys {
        if !c.key_ok(k) {
            return;
        }
    }
    if keys.iter().any(|k| c.exists(k)) {
        return reply::int(c.out, 0);
    }
    let mut i = 1;
    while i < a.len() {
        c.st.db.set(a.get(i), a.get(i + 1), Some(0));
        i += 2;
    }
    let args: Vec<&[u8]> = a.iter().collect();
    c.propagate(&args);
    reply::int(c.out, 1);
}

fn rename(c: &mut Ctx, src: &[u8], dst: &[u8], nx: bool) {
    if !c.exists(src) {
        return c.err("ERR no such key");
    }
    if src == dst {
        return if nx {
            reply::int(c.out, 0)
        } else {
            reply::ok(c.out)
        };
    }
    if nx && c.exists(dst) {
        return reply::int(c.out, 0);
    }
    if !c.key_ok(dst) {
        return;
    }
    let Some(e) = c.st.db.remove(src) else {
        return c.err("ERR no such key");
    };
    c.st.db.insert(dst, e.val, e.exp);
    c.propagate(&[if nx { b"RENAMENX" } else { b"RENAME" }, src, dst]);
    if nx {
        reply::int(c.out, 1);
    } else {
        reply::ok(c.out);
    }
}

fn copy(c: &mut Ctx, a: Argv) {
    let (src, dst) = (a.get(1), a.get(2));
    let mut replace = false;
    let mut to_db = c.st.cur;
    let mut i = 3;
    while i < a.len() {
        let o = a.get(i);
        if o.eq_ignore_ascii_case(b"REPLACE") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"DB") && i + 1 < a.len() {
            match super::select::db_index(c, a.get(i + 1)) {
                None => return,
                Some(d) => to_db = d,
            }
            i += 1;
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 1;
    }
    if src == dst && to_db == c.st.cur {
        return c.err("ERR source and destination objects are the same");
    }
    let Some(e) = c.live(src).cloned() else {
        return reply::int(c.out, 0);
    };
    let now = c.now;
    let exists = if to_db == c.st.cur {
        c.exists(dst)
    } else {
        c.st.db_at(to_db).peek(dst).is_some_and(|e| !e.expired(now))
    };
    if exists && !replace {
        return reply::int(c.out, 0);
    }
    if !c.key_ok(dst) {
        return;
    }
    c.st.db_at(to_db).insert(dst, e.val, e.exp);
    let args: Vec<&[u8]> = a.iter().collect();
    c.propagate(&args);
    reply::int(c.out, 1);
}

fn randomkey(c: &mut Ctx) {
    if c.st.db.is_empty() {
        return reply::nil(c.out);
    }
    // A random point in the SCAN hash order; the first live key from there (wrapping once).
    let seed = super::new_replid();
    let start = u64::from_str_radix(&seed[..16], 16).unwrap_or(0);
    for cursor in [start, 0] {
        let (_, keys) = c.st.db.scan(cursor, 16, None, c.now);
        if let Some(k) = keys.first() {
            let k = k.to_vec();
            return reply::bulk(c.out, &k);
        }
    }
    reply::nil(c.out)
}

/// Redis's string encodings: int (fits a long), embstr (<= 44 bytes), raw.
pub fn encoding(v: &[u8]) -> &'static str {
    if v.len() <= 20 && parse_i64(v).is_some() {
        "int"
    } else if v.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

fn object(c: &mut Ctx, a: Argv) {
    let sub = a.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"HELP") {
        let lines: [&[u8]; 10] = [
            b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            b"ENCODING <key>",
            b"    Return the kind of internal representation used in order to store the value",
            b"    associated with a <key>.",
            b"FREQ <key>",
            b"    Return the access frequency index of the <key>. The returned integer is",
            b"    proportional to the logarithm of the recent access frequency of the key.",
            b"IDLETIME <key>",
            b"    Return the idle time of the <key>, that is the approximated number of",
            b"    seconds elapsed since the last access to the key.",
        ];
        reply::array(c.out, lines.len());
        for l in lines {
            reply::simple(c.out, &String::from_utf8_lossy(l));
        }
        return;
    }
    if a.len() != 3 {
        return c.err(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
    if !(is(b"ENCODING") || is(b"REFCOUNT") || is(b"IDLETIME") || is(b"FREQ")) {
        return c.err(&format!(
            "ERR unknown subcommand '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
    let kv = c.kv;
    let Some(enc) = c.live(a.get(2)).map(|e| e.val.encoding(&kv.settings)) else {
        return reply::nil(c.out);
    };
    if is(b"ENCODING") {
        reply::bulk(c.out, enc.as_bytes());
    } else if is(b"REFCOUNT") {
        reply::int(c.out, 1);
    } else if is(b"IDLETIME") {
        reply::int(c.out, 0);
    } else if is(b"FREQ") {
        c.err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.");
    } else {
        c.err(&format!(
            "ERR unknown subcommand '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
}

fn memory(c: &mut Ctx, a: Argv) {
    let sub = a.get(1);
    if sub.eq_ignore_ascii_case(b"USAGE") && a.len() >= 3 {
        if a.len() != 3 && !(a.len() == 5 && a.get(3).eq_ignore_ascii_case(b"SAMPLES")) {
            return c.err(ERR_SYNTAX);
        }
        let k = a.get(2);
        match c.live(k).map(|e| e.val.mem()) {
            None => reply::nil(c.out),
            Some(n) => reply::int(c.out, (k.len() as u64 + n + ENTRY_OVERHEAD) as i64),
        }
    } else {
        c.err(&format!(
            "ERR unknown subcommand '{}'. Try MEMORY HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_redis() {
        assert_eq!(fmt_float(10.5 + 0.1), "10.6");
        assert_eq!(fmt_float(-0.0), "0");
        assert_eq!(fmt_float(17179869185.5), "17179869185.5");
        assert_eq!(fmt_float(3.0), "3");
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"1e3"), Some(1000.0));
    }

    #[test]
    fn encodings() {
        assert_eq!(encoding(b"12345"), "int");
        assert_eq!(encoding(b"0123"), "embstr");
        assert_eq!(encoding(&[b'x'; 45]), "raw");
    }
}
