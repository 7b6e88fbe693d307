//! RDB (version 10, what Redis 7.0 writes): encode the keyspace for full sync and `dump.rdb`, decode Redis's.
//!
//! Layout: `REDIS0010`, aux fields (`0xFA key value`), `0xFE db`, `0xFB size
//! expires`, then per key `[0xFC ms-le64] type key value`, and `0xFF` followed by
//! the CRC-64 (Jones, as Redis: the `crc` crate's CRC_64_REDIS) of everything
//! before it, little-endian. Strings are length-prefixed, int-encoded or LZF
//! compressed (decoded via the `lzf` crate). Hashes, lists, sets and sorted sets
//! are in `rdb_types`; streams and modules are refused by name rather than skipped.

use super::value::Value;
use crc::{Crc, CRC_64_REDIS};

pub const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

/// The RDB version we write (Redis 7.0).
pub const VERSION: u32 = 10;
/// Highest version we read (Redis 7.2 writes 11; the string encoding is unchanged).
const MAX_VERSION: u32 = 12;

const OP_FUNCTION2: u8 = 0xF5;
const OP_MODULE_AUX: u8 = 0xF7;
const OP_IDLE: u8 = 0xF8;
const OP_FREQ: u8 = 0xF9;
const OP_AUX: u8 = 0xFA;
const OP_RESIZEDB: u8 = 0xFB;
const OP_EXPIRETIME_MS: u8 = 0xFC;
const OP_EXPIRETIME: u8 = 0xFD;
const OP_SELECTDB: u8 = 0xFE;
const OP_EOF: u8 = 0xFF;
const TYPE_STRING: u8 = 0;

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RdbError {
    #[error("not an RDB file (no REDIS magic)")]
    Magic,
    #[error("RDB version {0} is not supported (at most {MAX_VERSION})")]
    Version(u32),
    #[error("RDB truncated at byte {0}")]
    Truncated(usize),
    #[error("RDB checksum mismatch (stored {stored:016x}, computed {computed:016x})")]
    Checksum { stored: u64, computed: u64 },
    #[error("RDB value type {0} ({1}) at byte {2} is not supported by kv")]
    Type(u8, &'static str, usize),
    #[error("RDB opcode 0x{0:02x} at byte {1} is not supported by kv")]
    Opcode(u8, usize),
    #[error("RDB bad string encoding at byte {0}")]
    Encoding(usize),
    #[error("RDB corrupt LZF data at byte {0}")]
    Lzf(usize),
    #[error("RDB string of {0} bytes exceeds the limit")]
    TooBig(u64),
    #[error("RDB trailing bytes after EOF")]
    Trailing,
}

/// Metadata written as aux fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aux {
    pub repl_id: Option<String>,
    pub repl_offset: Option<i64>,
}

/// Redis's type names, for a clear refusal.
fn type_name(t: u8) -> &'static str {
    match t {
        1 => "list",
        2 => "set",
        3 => "zset",
        4 => "hash",
        5 => "zset2",
        6 | 7 => "module",
        9 => "zipmap",
        10 => "ziplist list",
        11 => "intset",
        12 => "ziplist zset",
        13 => "ziplist hash",
        14 => "quicklist",
        15 => "stream",
        16 => "listpack hash",
        17 => "listpack zset",
        18 => "quicklist2",
        19 => "stream2",
        _ => "unknown",
    }
}

/// Writes an RDB file into a buffer.
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// Header and aux fields, as Redis 7.0 writes them.
    pub fn new(used_mem: u64, aux: &Aux) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(256),
        };
        w.buf
            .extend_from_slice(format!("REDIS{VERSION:04}").as_bytes());
        let ctime = super::db::now_ms() / 1000;
        w.aux(b"redis-ver", super::REDIS_VERSION.as_bytes());
        w.aux(b"redis-bits", b"64");
        w.aux(b"ctime", ctime.to_string().as_bytes());
        w.aux(b"used-mem", used_mem.to_string().as_bytes());
        if let (Some(id), Some(off)) = (&aux.repl_id, aux.repl_offset) {
            w.aux(b"repl-stream-db", b"0");
            w.aux(b"repl-id", id.as_bytes());
            w.aux(b"repl-offset", off.to_string().as_bytes());
        }
        w.aux(b"aof-base", b"0");
        w
    }

    fn aux(&mut self, k: &[u8], v: &[u8]) {
        self.buf.push(OP_AUX);
        self.string(k);
        self.string(v);
    }

    pub(super) fn len(&mut self, n: u64) {
        if n < 1 << 6 {
            self.buf.push(n as u8);
        } else if n < 1 << 14 {
            self.buf.push(0x40 | (n >> 8) as u8);
            self.buf.push(n as u8);
        } else if n <= u32::MAX as u64 {
            self.buf.push(0x80);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            self.buf.push(0x81);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// A string, int-encoded when it is a short canonical integer (as Redis does).
    pub fn string(&mut self, s: &[u8]) {
        if s.len() <= 11 {
            if let Some(v) = super::frame::parse_i64(s) {
                if let Ok(b) = i8::try_from(v) {
                    self.buf.push(0xC0 | ENC_INT8);
                    self.buf.push(b as u8);
                    return;
                } else if let Ok(b) = i16::try_from(v) {
                    self.buf.push(0xC0 | ENC_INT16);
                    self.buf.extend_from_slice(&b.to_le_bytes());
                    return;
                } else if let Ok(b) = i32::try_from(v) {
                    self.buf.push(0xC0 | ENC_INT32);
                    self.buf.extend_from_slice(&b.to_le_bytes());
                    return;
                }
            }
        }
        self.len(s.len() as u64);
        self.buf.extend_from_slice(s);
    }

    pub fn select_db(&mut self, db: u64, size: u64, expires: u64) {
        self.buf.push(OP_SELECTDB);
        self.len(db);
        self.buf.push(OP_RESIZEDB);
        self.len(size);
        self.len(expires);
    }

    /// One string key; `exp` is absolute ms since the epoch, 0 = none.
    pub fn string_key(&mut self, key: &[u8], val: &[u8], exp: u64) {
        if exp != 0 {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&exp.to_le_bytes());
        }
        self.buf.push(TYPE_STRING);
        self.string(key);
        self.string(val);
    }

    /// One key of any type; `exp` is absolute ms since the epoch, 0 = none.
    pub fn key(&mut self, key: &[u8], val: &Value, exp: u64) {
        if let Value::Str(s) = val {
            return self.string_key(key, s, exp);
        }
        if exp != 0 {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&exp.to_le_bytes());
        }
        super::rdb_types::write(self, key, val);
    }

    /// EOF and checksum; the finished file.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(OP_EOF);
        let crc = CRC64.checksum(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Reads an RDB file from a complete buffer.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    max_string: u64,
}

impl<'a> Reader<'a> {
    /// A reader over one value (DUMP payloads).
    pub(super) fn over(buf: &'a [u8], max_string: u64) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            max_string,
        }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(RdbError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(super) fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    /// A length, or `Err(Ok(enc))` style special encoding signalled by `Some`.
    fn len_or_enc(&mut self) -> Result<(u64, Option<u8>), RdbError> {
        let b = self.byte()?;
        match b >> 6 {
            0 => Ok(((b & 0x3F) as u64, None)),
            1 => Ok(((((b & 0x3F) as u64) << 8) | self.byte()? as u64, None)),
            2 => match b {
                0x80 => {
                    let s = self.take(4)?;
                    Ok((u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as u64, None))
                }
                0x81 => {
                    let s = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    Ok((u64::from_be_bytes(a), None))
                }
                _ => Err(RdbError::Encoding(self.pos - 1)),
            },
            _ => Ok((0, Some(b & 0x3F))),
        }
    }

    pub(super) fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_enc()? {
            (n, None) => Ok(n),
            (_, Some(_)) => Err(RdbError::Encoding(self.pos - 1)),
        }
    }

    pub(super) fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        let at = self.pos;
        match self.len_or_enc()? {
            (n, None) => {
                if n > self.max_string {
                    return Err(RdbError::TooBig(n));
                }
                Ok(self.take(n as usize)?.to_vec())
            }
            (_, Some(ENC_INT8)) => Ok((self.byte()? as i8).to_string().into_bytes()),
            (_, Some(ENC_INT16)) => {
                let s = self.take(2)?;
                Ok(i16::from_le_bytes([s[0], s[1]]).to_string().into_bytes())
            }
            (_, Some(ENC_INT32)) => {
                let s = self.take(4)?;
                Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]])
                    .to_string()
                    .into_bytes())
            }
            (_, Some(ENC_LZF)) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if ulen > self.max_string || clen > self.max_string {
                    return Err(RdbError::TooBig(ulen.max(clen)));
                }
                let data = self.take(clen as usize)?;
                let out = lzf::decompress(data, ulen as usize).map_err(|_| RdbError::Lzf(at))?;
                if out.len() as u64 != ulen {
                    return Err(RdbError::Lzf(at));
                }
                Ok(out)
            }
            (_, Some(_)) => Err(RdbError::Encoding(at)),
        }
    }
}

/// Decodes a whole RDB file, calling `key(db, key, value, expiry_ms)` for every
/// key (expiry 0 = none). Strings longer than `max_string` are refused.
pub fn decode(
    buf: &[u8],
    max_string: u64,
    mut key: impl FnMut(u64, Vec<u8>, Value, u64),
) -> Result<Aux, RdbError> {
    if buf.len() < 9 || &buf[..5] != b"REDIS" {
        return Err(RdbError::Magic);
    }
    let version: u32 = std::str::from_utf8(&buf[5..9])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(RdbError::Magic)?;
    if version == 0 || version > MAX_VERSION {
        return Err(RdbError::Version(version));
    }
    let mut r = Reader {
        buf,
        pos: 9,
        max_string,
    };
    let mut aux = Aux::default();
    let mut db = 0u64;
    let mut exp = 0u64;
    loop {
        let at = r.pos;
        let op = r.byte()?;
        match op {
            OP_AUX => {
                let k = r.string()?;
                let v = r.string()?;
                match &k[..] {
                    b"repl-id" => aux.repl_id = Some(String::from_utf8_lossy(&v).into_owned()),
                    b"repl-offset" => {
                        aux.repl_offset = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())
                    }
                    _ => {}
                }
            }
            OP_SELECTDB => db = r.len()?,
            OP_RESIZEDB => {
                r.len()?;
                r.len()?;
            }
            OP_EXPIRETIME_MS => {
                let s = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                // A stored 0 or negative time means "already expired"; keep it expired.
                exp = (i64::from_le_bytes(a)).max(1) as u64;
            }
            OP_EXPIRETIME => {
                let s = r.take(4)?;
                exp = (i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64 * 1000).max(1) as u64;
            }
            OP_IDLE => {
                r.len()?;
            }
            OP_FREQ => {
                r.byte()?;
            }
            OP_FUNCTION2 => {
                // Redis 7 functions: kv has none to load; refuse rather than drop them.
                return Err(RdbError::Opcode(op, at));
            }
            OP_MODULE_AUX => return Err(RdbError::Opcode(op, at)),
            OP_EOF => {
                if version >= 5 {
                    let body = &buf[..r.pos];
                    let s = r.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    let stored = u64::from_le_bytes(a);
                    if stored != 0 {
                        let computed = CRC64.checksum(body);
                        if computed != stored {
                            return Err(RdbError::Checksum { stored, computed });
                        }
                    }
                }
                if r.pos != buf.len() {
                    return Err(RdbError::Trailing);
                }
                return Ok(aux);
            }
            TYPE_STRING => {
                let k = r.string()?;
                let v = r.string()?;
                key(db, k, Value::Str(v), exp);
                exp = 0;
            }
            t if super::rdb_types::readable(t) => {
                let k = r.string()?;
                let v = super::rdb_types::read(&mut r, t)?;
                // Redis never writes empty collections; one would be a key with no value.
                if !v.is_empty() {
                    key(db, k, v, exp);
                }
                exp = 0;
            }
            t if t < OP_FUNCTION2 => return Err(RdbError::Type(t, type_name(t), at)),
            _ => return Err(RdbError::Opcode(op, at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(keys: &[(&[u8], &[u8], u64)]) -> Vec<(u64, Vec<u8>, Vec<u8>, u64)> {
        let mut w = Writer::new(
            1234,
            &Aux {
                repl_id: Some("a".repeat(40)),
                repl_offset: Some(77),
            },
        );
        w.select_db(0, keys.len() as u64, 0);
        for (k, v, e) in keys {
            w.string_key(k, v, *e);
        }
        let file = w.finish();
        let mut got = Vec::new();
        let aux = decode(&file, u64::MAX, |d, k, v, e| {
            got.push((d, k, v.bytes().to_vec(), e))
        })
        .unwrap();
        assert_eq!(aux.repl_offset, Some(77));
        assert_eq!(aux.repl_id.as_deref(), Some(&*"a".repeat(40)));
        got
    }

    #[test]
    fn strings_roundtrip_with_every_encoding() {
        let big = vec![b'x'; 70000];
        let keys: Vec<(&[u8], &[u8], u64)> = vec![
            (b"k", b"v", 0),
            (b"n", b"-5", 1_900_000_000_000),
            (b"n16", b"30000", 0),
            (b"n32", b"-2000000000", 0),
            (b"n64", b"9000000000", 0),
            (b"lead0", b"007", 0),
            (b"big", &big, 0),
            (&[0u8; 100], b"", 0),
        ];
        let got = roundtrip(&keys);
        assert_eq!(got.len(), keys.len());
        for ((_, k, v, e), (k2, v2, e2)) in got.iter().zip(&keys) {
            assert_eq!((&k[..], &v[..], *e), (*k2, *v2, *e2));
        }
    }

    #[test]
    fn crc_is_redis_jones() {
        // The check value Redis's crc64.c test prints for "123456789".
        assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let mut w = Writer::new(0, &Aux::default());
        w.select_db(0, 1, 0);
        w.string_key(b"key", b"value", 5);
        let file = w.finish();
        for cut in 0..file.len() {
            assert!(decode(&file[..cut], u64::MAX, |_, _, _, _| {}).is_err());
        }
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 12] ^= 1;
        assert!(decode(&bad, u64::MAX, |_, _, _, _| {}).is_err());
        assert_eq!(
            decode(b"REDIS0010\x0F\x01k", u64::MAX, |_, _, _, _| {}),
            Err(RdbError::Type(15, "stream", 9))
        );
    }

    #[test]
    fn lzf_strings_decode() {
        let plain = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
        let c = lzf::compress(&plain).unwrap();
        let mut buf = b"REDIS0010".to_vec();
        buf.push(TYPE_STRING);
        buf.extend_from_slice(b"\x01k");
        buf.push(0xC3);
        buf.push(c.len() as u8);
        buf.push(plain.len() as u8);
        buf.extend_from_slice(&c);
        buf.push(OP_EOF);
        buf.extend_from_slice(&[0; 8]); // checksum disabled
        let mut got = Vec::new();
        decode(&buf, u64::MAX, |_, _, v, _| got.push(v)).unwrap();
        assert_eq!(got, vec![Value::Str(plain)]);
    }

    #[test]
    fn every_type_roundtrips_and_damage_is_an_error() {
        use indexmap::{IndexMap, IndexSet};
        let mut z = super::super::value::ZSet::default();
        z.insert(b"a", 1.5);
        z.insert(b"b", f64::NEG_INFINITY);
        let vals = vec![
            Value::List(vec![b"x".to_vec(), b"12".to_vec()].into()),
            Value::Set(IndexSet::from([b"m".to_vec(), b"-7".to_vec()])),
            Value::Hash(IndexMap::from([(b"f".to_vec(), b"v".to_vec())])),
            Value::ZSet(z),
        ];
        let mut w = Writer::new(0, &Aux::default());
        w.select_db(0, vals.len() as u64, 1);
        for (i, v) in vals.iter().enumerate() {
            w.key(format!("k{i}").as_bytes(), v, if i == 0 { 99 } else { 0 });
        }
        let file = w.finish();
        let mut got = Vec::new();
        decode(&file, u64::MAX, |_, _, v, e| got.push((v, e))).unwrap();
        let want: Vec<(Value, u64)> = vals
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, if i == 0 { 99 } else { 0 }))
            .collect();
        assert_eq!(got, want);
        for cut in 0..file.len() {
            assert!(decode(&file[..cut], u64::MAX, |_, _, _, _| {}).is_err());
        }
    }
}
