//! Value types a key can hold (string, hash, list, set, sorted set), their
//! Redis 7.0 names and encodings, memory estimates and Redis's number formats.

use indexmap::{IndexMap, IndexSet};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Bytes charged per collection element on top of its own bytes.
pub const ELEM_OVERHEAD: u64 = 16;

use super::config::Settings;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    /// Insertion order kept, as Redis's listpack hashes reply in it.
    Hash(IndexMap<Vec<u8>, Vec<u8>>),
    List(VecDeque<Vec<u8>>),
    Set(IndexSet<Vec<u8>>),
    ZSet(ZSet),
}

impl Value {
    /// The bytes of a string (empty for other types: callers check the type first).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Value::Str(v) => v,
            _ => &[],
        }
    }

    /// TYPE's answer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// Bytes charged for the value (elements plus per-element overhead).
    pub fn mem(&self) -> u64 {
        let e = |n: usize| n as u64 + ELEM_OVERHEAD;
        match self {
            Value::Str(v) => v.len() as u64,
            Value::Hash(h) => h.iter().map(|(k, v)| e(k.len()) + v.len() as u64).sum(),
            Value::List(l) => l.iter().map(|v| e(v.len())).sum(),
            Value::Set(s) => s.iter().map(|v| e(v.len())).sum(),
            Value::ZSet(z) => z.dict.keys().map(|m| e(m.len()) + 8).sum(),
        }
    }

    /// OBJECT ENCODING's answer, by the `*-max-listpack-*` thresholds in `s`.
    pub fn encoding(&self, s: &Settings) -> &'static str {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as usize;
        match self {
            Value::Str(v) => super::command_more::encoding(v),
            Value::Hash(h) => {
                let max = get(&s.hash_max_listpack_value);
                if h.len() <= get(&s.hash_max_listpack_entries)
                    && h.iter().all(|(k, v)| k.len() <= max && v.len() <= max)
                {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::List(_) => "quicklist",
            Value::Set(st) => {
                if is_intset(st, get(&s.set_max_intset_entries)) {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                if z.len() <= get(&s.zset_max_listpack_entries)
                    && z.dict
                        .keys()
                        .all(|m| m.len() <= get(&s.zset_max_listpack_value))
                {
                    "listpack"
                } else {
                    "skiplist"
                }
            }
        }
    }

    /// Elements in a collection (1 for a string).
    pub fn len(&self) -> usize {
        match self {
            Value::Str(_) => 1,
            Value::Hash(h) => h.len(),
            Value::List(l) => l.len(),
            Value::Set(s) => s.len(),
            Value::ZSet(z) => z.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether Redis would keep this set as an intset (small, all integers).
pub fn is_intset(s: &IndexSet<Vec<u8>>, max_entries: usize) -> bool {
    s.len() <= max_entries && s.iter().all(|m| intset_int(m).is_some())
}

/// An integer exactly as an intset stores it (canonical decimal, 64-bit).
pub fn intset_int(m: &[u8]) -> Option<i64> {
    let n = super::frame::parse_i64(m)?;
    let mut b = [0u8; 20];
    (super::frame::fmt_i64(n, &mut b) == m).then_some(n)
}

/// A score with a total order (Redis never stores NaN scores).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // -0 and 0 compare equal as in Redis; no NaN reaches here.
        self.0
            .partial_cmp(&o.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

/// A sorted set: member -> score, and (score, member) in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSet {
    pub dict: HashMap<Vec<u8>, f64>,
    pub tree: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    /// Sets the score of `m`; returns the old one.
    pub fn insert(&mut self, m: &[u8], score: f64) -> Option<f64> {
        let old = self.dict.insert(m.to_vec(), score);
        if let Some(o) = old {
            self.tree.remove(&(Score(o), m.to_vec()));
        }
        self.tree.insert((Score(score), m.to_vec()));
        old
    }

    pub fn remove(&mut self, m: &[u8]) -> Option<f64> {
        let old = self.dict.remove(m)?;
        self.tree.remove(&(Score(old), m.to_vec()));
        Some(old)
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.dict.get(m).copied()
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let s = self.score(m)?;
        let key = (Score(s), m.to_vec());
        Some(self.tree.range(..&key).count())
    }
}

/// Redis's `%.17g` for scores (addReplyDouble in RESP2), with `inf`/`-inf`.
pub fn fmt_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // 17 significant digits, then %g's choice of notation and zero trimming.
    let e = format!("{d:.16e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let prec = (16 - exp).max(0) as usize;
    trim_zeros(&format!("{d:.prec$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Redis's `string2d` for scores and increments: `inf`, `+inf`, `-inf`
/// accepted, NaN, spaces and trailing garbage refused.
pub fn parse_double(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.len() > 256 || s[0].is_ascii_whitespace() {
        return None;
    }
    let t = std::str::from_utf8(s).ok()?;
    let v = match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        l if l.contains("inf") || l.contains("nan") => return None,
        _ => t.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_printf_17g() {
        assert_eq!(fmt_double(1.5), "1.5");
        assert_eq!(fmt_double(0.1), "0.10000000000000001");
        assert_eq!(fmt_double(10.0), "10");
        assert_eq!(fmt_double(-3.0), "-3");
        assert_eq!(fmt_double(1e20), "1e+20");
        assert_eq!(fmt_double(1.0e-5), "1.0000000000000001e-05");
        assert_eq!(fmt_double(123456789.0), "123456789");
        assert_eq!(fmt_double(f64::INFINITY), "inf");
        assert_eq!(fmt_double(0.0001), "0.0001");
    }

    #[test]
    fn doubles_parse_like_redis() {
        assert_eq!(parse_double(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"nan"), None);
        assert_eq!(parse_double(b" 1"), None);
        assert_eq!(parse_double(b"1.5"), Some(1.5));
        assert_eq!(parse_double(b"abc"), None);
    }

    #[test]
    fn zset_orders_by_score_then_member() {
        let mut z = ZSet::default();
        z.insert(b"b", 1.0);
        z.insert(b"a", 1.0);
        z.insert(b"c", 0.5);
        let order: Vec<&[u8]> = z.tree.iter().map(|(_, m)| m.as_slice()).collect();
        assert_eq!(order, vec![&b"c"[..], b"a", b"b"]);
        assert_eq!(z.rank(b"b"), Some(2));
        assert_eq!(z.insert(b"c", 5.0), Some(0.5));
        assert_eq!(z.rank(b"c"), Some(2));
        assert_eq!(z.remove(b"a"), Some(1.0));
        assert_eq!(z.len(), 2);
    }
}
