//! RDB value types beyond strings: writing hashes, lists, sets and sorted sets
//! in encodings Redis 7.0 loads (the plain ones: 1 list, 2 set, 4 hash,
//! 5 zset2), and reading every encoding Redis writes for them (listpack,
//! ziplist, quicklist 1 and 2, intset, old string-scored zsets).
//!
//! Compact encodings are blobs inside an RDB string; each decoder checks
//! every length against the blob, so a damaged file is an error, never a panic.

use super::rdb::{RdbError, Reader, Writer};
use super::value::{Value, ZSet};
use indexmap::{IndexMap, IndexSet};
use std::collections::VecDeque;

pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
pub const TYPE_ZSET_2: u8 = 5;
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
pub const TYPE_LIST_QUICKLIST: u8 = 14;
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
/// Redis 7.2's small sets; read so a 7.2 file loads.
pub const TYPE_SET_LISTPACK: u8 = 20;

/// Whether `t` is a value type this module reads.
pub fn readable(t: u8) -> bool {
    matches!(
        t,
        TYPE_LIST
            | TYPE_SET
            | TYPE_ZSET
            | TYPE_HASH
            | TYPE_ZSET_2
            | TYPE_LIST_ZIPLIST
            | TYPE_SET_INTSET
            | TYPE_ZSET_ZIPLIST
            | TYPE_HASH_ZIPLIST
            | TYPE_LIST_QUICKLIST
            | TYPE_HASH_LISTPACK
            | TYPE_ZSET_LISTPACK
            | TYPE_LIST_QUICKLIST_2
            | TYPE_SET_LISTPACK
    )
}

/// The RDB type byte kv writes for a value.
pub fn type_of(v: &Value) -> u8 {
    match v {
        Value::Str(_) => 0,
        Value::List(_) => TYPE_LIST,
        Value::Set(_) => TYPE_SET,
        Value::Hash(_) => TYPE_HASH,
        Value::ZSet(_) => TYPE_ZSET_2,
    }
}

/// Writes a value's type byte, key and body.
pub fn write(w: &mut Writer, key: &[u8], v: &Value) {
    w.buf.push(type_of(v));
    w.string(key);
    write_body(w, v);
}

/// The value part of a key (after its type byte and name), also DUMP's payload body.
pub fn write_body(w: &mut Writer, v: &Value) {
    match v {
        Value::Str(s) => {
            w.string(s);
        }
        Value::List(l) => {
            w.len(l.len() as u64);
            for e in l {
                w.string(e);
            }
        }
        Value::Set(s) => {
            w.len(s.len() as u64);
            for e in s {
                w.string(e);
            }
        }
        Value::Hash(h) => {
            w.len(h.len() as u64);
            for (f, v) in h {
                w.string(f);
                w.string(v);
            }
        }
        Value::ZSet(z) => {
            w.len(z.len() as u64);
            // Highest first, as Redis writes (its loader then inserts at the head).
            for (s, m) in z.tree.iter().rev() {
                w.string(m);
                w.buf.extend_from_slice(&s.0.to_le_bytes());
            }
        }
    }
}

fn bad(at: usize) -> RdbError {
    RdbError::Encoding(at)
}

/// Reads the value of type `t` (its key already read).
pub(super) fn read(r: &mut Reader, t: u8) -> Result<Value, RdbError> {
    let at = r.pos;
    // Element counts are bounded by the bytes left, so a bogus count cannot
    // reserve memory before the truncation is noticed.
    let cap = |n: u64, r: &Reader| n.min((r.buf.len() - r.pos) as u64) as usize;
    match t {
        TYPE_LIST => {
            let n = r.len()?;
            let mut l = VecDeque::with_capacity(cap(n, r));
            for _ in 0..n {
                l.push_back(r.string()?);
            }
            Ok(Value::List(l))
        }
        TYPE_SET => {
            let n = r.len()?;
            let mut s = IndexSet::with_capacity(cap(n, r));
            for _ in 0..n {
                s.insert(r.string()?);
            }
            Ok(Value::Set(s))
        }
        TYPE_HASH => {
            let n = r.len()?;
            let mut h = IndexMap::with_capacity(cap(n, r));
            for _ in 0..n {
                let f = r.string()?;
                let v = r.string()?;
                h.insert(f, v);
            }
            Ok(Value::Hash(h))
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = r.len()?;
            let mut z = ZSet::default();
            for _ in 0..n {
                let m = r.string()?;
                let s = if t == TYPE_ZSET_2 {
                    let b = r.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a)
                } else {
                    old_double(r)?
                };
                if s.is_nan() {
                    return Err(bad(at));
                }
                z.insert(&m, s);
            }
            Ok(Value::ZSet(z))
        }
        TYPE_SET_INTSET => {
            let blob = r.string()?;
            Ok(Value::Set(
                intset(&blob).ok_or(bad(at))?.into_iter().collect(),
            ))
        }
        TYPE_SET_LISTPACK => {
            let blob = r.string()?;
            Ok(Value::Set(
                listpack(&blob).ok_or(bad(at))?.into_iter().collect(),
            ))
        }
        TYPE_HASH_LISTPACK | TYPE_HASH_ZIPLIST => {
            let blob = r.string()?;
            let items = if t == TYPE_HASH_LISTPACK {
                listpack(&blob)
            } else {
                ziplist(&blob)
            }
            .ok_or(bad(at))?;
            if items.len() % 2 != 0 {
                return Err(bad(at));
            }
            let mut h = IndexMap::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                h.insert(f, v);
            }
            Ok(Value::Hash(h))
        }
        TYPE_ZSET_LISTPACK | TYPE_ZSET_ZIPLIST => {
            let blob = r.string()?;
            let items = if t == TYPE_ZSET_LISTPACK {
                listpack(&blob)
            } else {
                ziplist(&blob)
            }
            .ok_or(bad(at))?;
            if items.len() % 2 != 0 {
                return Err(bad(at));
            }
            let mut z = ZSet::default();
            let mut it = items.into_iter();
            while let (Some(m), Some(s)) = (it.next(), it.next()) {
                let s = super::value::parse_double(&s).ok_or(bad(at))?;
                z.insert(&m, s);
            }
            Ok(Value::ZSet(z))
        }
        TYPE_LIST_ZIPLIST => {
            let blob = r.string()?;
            Ok(Value::List(ziplist(&blob).ok_or(bad(at))?.into()))
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let n = r.len()?;
            let mut l = VecDeque::new();
            for _ in 0..n {
                let container = if t == TYPE_LIST_QUICKLIST_2 {
                    r.len()?
                } else {
                    2
                };
                let blob = r.string()?;
                match container {
                    1 => l.push_back(blob),
                    2 => {
                        let items = if t == TYPE_LIST_QUICKLIST_2 {
                            listpack(&blob)
                        } else {
                            ziplist(&blob)
                        };
                        l.extend(items.ok_or(bad(at))?);
                    }
                    _ => return Err(bad(at)),
                }
            }
            Ok(Value::List(l))
        }
        _ => Err(bad(at)),
    }
}

/// A zset score of RDB type 3: a length byte (253 NaN, 254 +inf, 255 -inf) then ASCII.
fn old_double(r: &mut Reader) -> Result<f64, RdbError> {
    let at = r.pos;
    match r.byte()? {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        n => {
            let s = r.take(n as usize)?;
            super::value::parse_double(s).ok_or(bad(at))
        }
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | x as u64)
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Every entry of a listpack (Redis 7's compact encoding), integers as decimal.
pub fn listpack(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let total = le(b.get(..4)?) as usize;
    if total != b.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut p = 6;
    loop {
        let h = *b.get(p)?;
        if h == 0xFF {
            return (p + 1 == b.len()).then_some(out);
        }
        let (enclen, item): (usize, Vec<u8>) = if h & 0x80 == 0 {
            (1, (h & 0x7F).to_string().into_bytes())
        } else if h & 0xC0 == 0x80 {
            let n = (h & 0x3F) as usize;
            (1 + n, b.get(p + 1..p + 1 + n)?.to_vec())
        } else if h & 0xE0 == 0xC0 {
            let v = (((h & 0x1F) as u64) << 8) | *b.get(p + 1)? as u64;
            (2, signed(v, 13).to_string().into_bytes())
        } else if h & 0xF0 == 0xE0 {
            let n = (((h & 0x0F) as usize) << 8) | *b.get(p + 1)? as usize;
            (2 + n, b.get(p + 2..p + 2 + n)?.to_vec())
        } else {
            match h {
                0xF0 => {
                    let n = le(b.get(p + 1..p + 5)?) as usize;
                    (5 + n, b.get(p + 5..p.checked_add(5 + n)?)?.to_vec())
                }
                0xF1..=0xF4 => {
                    let bytes = match h {
                        0xF1 => 2,
                        0xF2 => 3,
                        0xF3 => 4,
                        _ => 8,
                    };
                    let v = le(b.get(p + 1..p + 1 + bytes)?);
                    (
                        1 + bytes,
                        signed(v, 8 * bytes as u32).to_string().into_bytes(),
                    )
                }
                _ => return None,
            }
        };
        let back = match enclen {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        };
        out.push(item);
        p = p.checked_add(enclen + back)?;
    }
}

/// Every entry of a ziplist (what Redis before 7 wrote), integers as decimal.
pub fn ziplist(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    if le(b.get(..4)?) as usize != b.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut p = 10;
    loop {
        let first = *b.get(p)?;
        if first == 0xFF {
            return (p + 1 == b.len()).then_some(out);
        }
        p += if first == 0xFE { 5 } else { 1 };
        let h = *b.get(p)?;
        let item: Vec<u8>;
        match h >> 6 {
            0 => {
                let n = (h & 0x3F) as usize;
                item = b.get(p + 1..p + 1 + n)?.to_vec();
                p += 1 + n;
            }
            1 => {
                let n = (((h & 0x3F) as usize) << 8) | *b.get(p + 1)? as usize;
                item = b.get(p + 2..p + 2 + n)?.to_vec();
                p += 2 + n;
            }
            2 => {
                let s = b.get(p + 1..p + 5)?;
                let n = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
                item = b.get(p + 5..p.checked_add(5 + n)?)?.to_vec();
                p += 5 + n;
            }
            _ => {
                let (bytes, v) = match h {
                    0xC0 => (2, None),
                    0xD0 => (4, None),
                    0xE0 => (8, None),
                    0xF0 => (3, None),
                    0xFE => (1, None),
                    0xF1..=0xFD => (0, Some((h & 0x0F) as i64 - 1)),
                    _ => return None,
                };
                let v = match v {
                    Some(v) => v,
                    None => signed(le(b.get(p + 1..p + 1 + bytes)?), 8 * bytes as u32),
                };
                item = v.to_string().into_bytes();
                p += 1 + bytes;
            }
        }
        out.push(item);
    }
}

/// The members of an intset, as decimal strings.
pub fn intset(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let enc = le(b.get(..4)?) as usize;
    let n = le(b.get(4..8)?) as usize;
    if !matches!(enc, 2 | 4 | 8) || n.checked_mul(enc)?.checked_add(8)? != b.len() {
        return None;
    }
    Some(
        b[8..]
            .chunks_exact(enc)
            .map(|c| signed(le(c), 8 * enc as u32).to_string().into_bytes())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_decodes_every_entry_kind() {
        // Built by hand: "a" (6-bit str), 5 (7-bit uint), -2 (13-bit int), 1000 (int16).
        let mut lp = vec![0, 0, 0, 0, 4, 0];
        lp.extend_from_slice(&[0x81, b'a', 2]);
        lp.extend_from_slice(&[5, 1]);
        lp.extend_from_slice(&[0xDF, 0xFE, 2]);
        lp.extend_from_slice(&[0xF1, 0xE8, 0x03, 3]);
        lp.push(0xFF);
        let n = lp.len() as u32;
        lp[..4].copy_from_slice(&n.to_le_bytes());
        let got = listpack(&lp).unwrap();
        assert_eq!(
            got,
            vec![
                b"a".to_vec(),
                b"5".to_vec(),
                b"-2".to_vec(),
                b"1000".to_vec()
            ]
        );
        for cut in 0..lp.len() {
            assert!(listpack(&lp[..cut]).is_none());
        }
    }

    #[test]
    fn intset_and_ziplist_decode() {
        let mut is = vec![2, 0, 0, 0, 2, 0, 0, 0];
        is.extend_from_slice(&(-3i16).to_le_bytes());
        is.extend_from_slice(&7i16.to_le_bytes());
        assert_eq!(intset(&is).unwrap(), vec![b"-3".to_vec(), b"7".to_vec()]);
        assert!(intset(&is[..9]).is_none());
        // ziplist: "ab" then 12 (4-bit immediate 0xF1 + 12 -> 0xFD is 12).
        let mut zl = vec![0; 10];
        zl.extend_from_slice(&[0, 0x02, b'a', b'b']);
        zl.extend_from_slice(&[4, 0xFD]);
        zl.push(0xFF);
        let n = zl.len() as u32;
        zl[..4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(ziplist(&zl).unwrap(), vec![b"ab".to_vec(), b"12".to_vec()]);
        for cut in 0..zl.len() {
            assert!(ziplist(&zl[..cut]).is_none());
        }
    }
}
