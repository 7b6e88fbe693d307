//! DUMP and RESTORE with Redis 7.0's payload: the RDB type byte and value,
//! the RDB version (2 bytes, little-endian) and a CRC-64 of all that, so a
//! payload moves between kv and Redis either way.

use super::command::{Ctx, ERR_SYNTAX};
use super::frame::{fmt_i64, parse_i64, reply, Argv};
use super::rdb::{Reader, Writer, CRC64, VERSION};
use super::rdb_types;
use super::value::Value;

/// The DUMP payload of a value.
pub fn payload(v: &Value) -> Vec<u8> {
    let mut w = Writer { buf: Vec::new() };
    w.buf.push(rdb_types::type_of(v));
    rdb_types::write_body(&mut w, v);
    w.buf.extend_from_slice(&(VERSION as u16).to_le_bytes());
    let crc = CRC64.checksum(&w.buf);
    w.buf.extend_from_slice(&crc.to_le_bytes());
    w.buf
}

/// The value of a payload; None if the version, checksum or body is wrong.
pub fn value_of(p: &[u8], max_string: u64) -> Option<Value> {
    if p.len() < 10 {
        return None;
    }
    let (body, tail) = p.split_at(p.len() - 10);
    let version = u16::from_le_bytes([tail[0], tail[1]]) as u32;
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&tail[2..]);
    if version > 12 || CRC64.checksum(&p[..p.len() - 8]) != u64::from_le_bytes(crc) {
        return None;
    }
    let mut r = Reader::over(body, max_string);
    let t = r.byte().ok()?;
    let v = if t == 0 {
        Value::Str(r.string().ok()?)
    } else if rdb_types::readable(t) {
        rdb_types::read(&mut r, t).ok()?
    } else {
        return None;
    };
    (r.pos == body.len() && !v.is_empty()).then_some(v)
}

pub fn dump(c: &mut Ctx, a: Argv) {
    match c.live(a.get(1)).map(|e| payload(&e.val)) {
        Some(p) => reply::bulk(c.out, &p),
        None => reply::nil(c.out),
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f].
pub fn restore(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let (mut replace, mut abs) = (false, false);
    let mut i = 4;
    while i < a.len() {
        let o = a.get(i);
        let more = i + 1 < a.len();
        if o.eq_ignore_ascii_case(b"REPLACE") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"ABSTTL") {
            abs = true;
        } else if o.eq_ignore_ascii_case(b"IDLETIME") && more {
            match parse_i64(a.get(i + 1)) {
                None => return c.err(super::command::ERR_NOT_INT),
                Some(n) if n < 0 => return c.err("ERR Invalid IDLETIME value, must be >= 0"),
                Some(_) => {}
            }
            i += 1;
        } else if o.eq_ignore_ascii_case(b"FREQ") && more {
            match parse_i64(a.get(i + 1)) {
                None => return c.err(super::command::ERR_NOT_INT),
                Some(n) if !(0..=255).contains(&n) => {
                    return c.err("ERR Invalid FREQ value, must be >= 0 and <= 255")
                }
                Some(_) => {}
            }
            i += 1;
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 1;
    }
    if !replace && c.exists(k) {
        return c.err("BUSYKEY Target key name already exists.");
    }
    let Some(ttl) = parse_i64(a.get(2)) else {
        return c.err(super::command::ERR_NOT_INT);
    };
    if ttl < 0 {
        return c.err("ERR Invalid TTL value, must be >= 0");
    }
    let Some(v) = value_of(a.get(3), c.kv.conf.max_value_bytes) else {
        return c.err("ERR DUMP payload version or checksum are wrong");
    };
    if !c.key_ok(k) {
        return;
    }
    let at = match (ttl, abs) {
        (0, _) => 0,
        (t, true) => t as u64,
        (t, false) => c.now.saturating_add(t as u64),
    };
    if at != 0 && at <= c.now && !c.from_master {
        // Already expired: as Redis, the key is just deleted.
        if c.st.db.remove(k).is_some() {
            c.propagate(&[b"DEL", k]);
        }
        return reply::ok(c.out);
    }
    c.st.db.insert(k, v, at);
    // An absolute expiry, so replicas and the AOF agree whatever their clock.
    let mut b = [0u8; 20];
    let ms = fmt_i64(at as i64, &mut b);
    c.propagate(&[b"RESTORE", k, ms, a.get(3), b"REPLACE", b"ABSTTL"]);
    reply::ok(c.out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_roundtrip_and_damage_is_refused() {
        let v = Value::List(vec![b"a".to_vec(), b"12".to_vec()].into());
        let p = payload(&v);
        assert_eq!(value_of(&p, u64::MAX), Some(v));
        for cut in 0..p.len() {
            assert_eq!(value_of(&p[..cut], u64::MAX), None);
        }
        let mut bad = p.clone();
        bad[1] ^= 1;
        assert_eq!(value_of(&bad, u64::MAX), None);
    }
}
