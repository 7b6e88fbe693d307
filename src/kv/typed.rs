//! What the collection commands (hash, list, set, zset) share: the type check
//! that answers WRONGTYPE, verbatim propagation, SCAN-family arguments and
//! pages, random picks, and RANDFIELD-style count replies.

use super::command::{Ctx, ERR_NOT_INT, ERR_SYNTAX, WRONGTYPE};
use super::db::{glob, scan_page};
use super::frame::{parse_i64, reply, Argv};
use super::value::Value;
use std::cell::Cell;

/// The command already replied with its error (WRONGTYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replied;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hash,
    List,
    Set,
    ZSet,
}

fn of(v: &Value) -> Option<Kind> {
    match v {
        Value::Str(_) => None,
        Value::Hash(_) => Some(Kind::Hash),
        Value::List(_) => Some(Kind::List),
        Value::Set(_) => Some(Kind::Set),
        Value::ZSet(_) => Some(Kind::ZSet),
    }
}

/// Expires `key` if due, then: Ok(true) if it holds a `kind`, Ok(false) if
/// absent, Err(Replied) after replying WRONGTYPE.
pub fn check(c: &mut Ctx, key: &[u8], kind: Kind) -> Result<bool, Replied> {
    if c.expire_if_needed(key) {
        return Ok(false);
    }
    match c.st.db.peek(key) {
        None => Ok(false),
        Some(e) if of(&e.val) == Some(kind) => Ok(true),
        Some(_) => {
            c.err(WRONGTYPE);
            Err(Replied)
        }
    }
}

/// Checks every key of `keys` (multi-key commands fail as a whole).
pub fn check_all<'k>(
    c: &mut Ctx,
    keys: impl Iterator<Item = &'k [u8]>,
    kind: Kind,
) -> Result<(), Replied> {
    for k in keys {
        check(c, k, kind)?;
    }
    Ok(())
}

/// Propagates the command as the client sent it (deterministic writes).
pub fn propagate_argv(c: &mut Ctx, a: Argv) {
    if !c.from_master {
        let args: Vec<&[u8]> = a.iter().collect();
        c.st.propagate(&args);
    }
}

/// Parses an integer argument, replying Redis's error when it is not one.
pub fn int(c: &mut Ctx, s: &[u8]) -> Option<i64> {
    let v = parse_i64(s);
    if v.is_none() {
        c.err(ERR_NOT_INT);
    }
    v
}

/// HSCAN/SSCAN/ZSCAN arguments after the key: (cursor, count, pattern).
pub fn scan_args<'a>(c: &mut Ctx, a: Argv<'a>) -> Option<(u64, usize, Option<&'a [u8]>)> {
    let Some(cursor) = std::str::from_utf8(a.get(2))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        c.err("ERR invalid cursor");
        return None;
    };
    let mut count = 10usize;
    let mut pattern = None;
    let mut i = 3;
    while i < a.len() {
        if i + 1 >= a.len() {
            c.err(ERR_SYNTAX);
            return None;
        }
        let (o, v) = (a.get(i), a.get(i + 1));
        if o.eq_ignore_ascii_case(b"COUNT") {
            match parse_i64(v) {
                None => {
                    c.err(ERR_NOT_INT);
                    return None;
                }
                Some(n) if n < 1 => {
                    c.err(ERR_SYNTAX);
                    return None;
                }
                Some(n) => count = n.min(1 << 20) as usize,
            }
        } else if o.eq_ignore_ascii_case(b"MATCH") {
            pattern = Some(v).filter(|p| *p != b"*");
        } else {
            c.err(ERR_SYNTAX);
            return None;
        }
        i += 2;
    }
    Some((cursor, count, pattern))
}

/// One page of a collection scan: compact encodings (`all_at_once`) answer
/// everything with cursor 0, as Redis does; bigger ones page by hash.
pub fn scan_names<'a, I>(
    names: I,
    all_at_once: bool,
    cursor: u64,
    count: usize,
    pattern: Option<&[u8]>,
) -> (u64, Vec<&'a [u8]>)
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let (next, page) = if all_at_once {
        (0, names.collect())
    } else {
        scan_page(names, cursor, count)
    };
    let page = page
        .into_iter()
        .filter(|n| pattern.is_none_or(|p| glob(p, n)))
        .collect();
    (next, page)
}

/// Writes a SCAN-shaped reply: [cursor, [items...]].
pub fn scan_reply(out: &mut Vec<u8>, next: u64, items: &[&[u8]]) {
    reply::array(out, 2);
    reply::bulk(out, next.to_string().as_bytes());
    reply::array(out, items.len());
    for i in items {
        reply::bulk(out, i);
    }
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A fast non-cryptographic random number (xorshift64*), seeded per thread.
pub fn rand_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            let seed = super::new_replid();
            x = u64::from_str_radix(&seed[..16], 16).unwrap_or(0x9E37_79B9_7F4A_7C15) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A random index below `n` (n > 0).
pub fn rand_below(n: usize) -> usize {
    (rand_u64() % n.max(1) as u64) as usize
}

/// Indices for a RANDFIELD/RANDMEMBER `count` over `n` elements: distinct
/// (all of them, in order, when count >= n) for count >= 0, with repeats for count < 0.
pub fn rand_indices(n: usize, count: i64) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if count < 0 {
        let k = count.unsigned_abs().min(1 << 24) as usize;
        return (0..k).map(|_| rand_below(n)).collect();
    }
    let k = count as usize;
    if k >= n {
        return (0..n).collect();
    }
    // Partial Fisher-Yates over the index range.
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rand_below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// The count argument of HRANDFIELD/SRANDMEMBER/ZRANDMEMBER, with the
/// optional WITH... flag at `a[3]`: (count, with).
pub fn rand_args(c: &mut Ctx, a: Argv, with: &[u8]) -> Option<(i64, bool)> {
    if a.len() > 4 || (a.len() == 4 && !a.get(3).eq_ignore_ascii_case(with)) {
        c.err(ERR_SYNTAX);
        return None;
    }
    let n = int(c, a.get(2))?;
    let with = a.len() == 4;
    if with && n.checked_mul(2).is_none() || n == i64::MIN {
        c.err("ERR value is out of range");
        return None;
    }
    Some((n, with))
}

/// A positive count (LPOP, SPOP, ZPOPMIN...): Redis's error for negatives.
pub fn positive_count(c: &mut Ctx, s: &[u8]) -> Option<usize> {
    match parse_i64(s) {
        Some(n) if n >= 0 => Some(n as usize),
        // Redis words a non-integer the same way.
        _ => {
            c.err("ERR value is out of range, must be positive");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_indices_are_distinct_for_positive_counts() {
        let v = rand_indices(10, 5);
        let mut s = v.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 5);
        assert_eq!(rand_indices(3, 10), vec![0, 1, 2]);
        assert_eq!(rand_indices(3, -7).len(), 7);
        assert!(rand_indices(0, -7).is_empty());
    }
}
