//! Sorted-set commands, as Redis 7.0 answers them: ZADD (NX/XX/GT/LT/CH/INCR),
//! ZREM, ZSCORE, ZMSCORE, ZINCRBY, ZCARD, ZCOUNT, ZLEXCOUNT, ZRANGE (BYSCORE,
//! BYLEX, REV, LIMIT) and its older forms, ZRANGESTORE, ZRANK, ZREVRANK,
//! ZPOPMIN, ZPOPMAX, ZREMRANGEBY*, ZRANDMEMBER, ZSCAN.

use super::command::{Cmd, Ctx, Spec, ERR_NOT_INT, ERR_SYNTAX};
use super::db::Db;
use super::frame::{parse_i64, reply, Argv};
use super::list::range;
use super::typed::{self, Kind};
use super::value::{fmt_double, parse_double, Value, ZSet, ELEM_OVERHEAD};

const ERR_FLOAT: &str = "ERR value is not a valid float";
const ERR_NAN: &str = "ERR resulting score is not a number (NaN)";
const ERR_SCORE_RANGE: &str = "ERR min or max is not a float";
const ERR_LEX_RANGE: &str = "ERR min or max not valid string range item";

fn cost(m: &[u8]) -> i64 {
    m.len() as i64 + ELEM_OVERHEAD as i64 + 8
}

/// Runs one sorted-set command; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let k = a.get(1);
    match spec.cmd {
        Cmd::ZAdd => zadd(c, a),
        Cmd::ZIncrBy => zincrby(c, a),
        Cmd::ZRem => zrem(c, a),
        Cmd::ZScore => {
            if typed::check(c, k, Kind::ZSet).is_ok() {
                match get(&c.st.db, k).and_then(|z| z.score(a.get(2))) {
                    Some(s) => reply::double(c.out, &fmt_double(s)),
                    None => reply::nil(c.out),
                }
            }
        }
        Cmd::ZMScore => {
            if typed::check(c, k, Kind::ZSet).is_ok() {
                let z = get(&c.st.db, k);
                reply::array(c.out, a.len() - 2);
                for m in a.iter().skip(2) {
                    match z.and_then(|z| z.score(m)) {
                        Some(s) => reply::double(c.out, &fmt_double(s)),
                        None => reply::nil(c.out),
                    }
                }
            }
        }
        Cmd::ZCard => {
            if typed::check(c, k, Kind::ZSet).is_ok() {
                let n = get(&c.st.db, k).map_or(0, |z| z.len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::ZCount | Cmd::ZLexCount => {
            let b = if spec.cmd == Cmd::ZCount {
                score_bounds(a.get(2), a.get(3)).ok_or(ERR_SCORE_RANGE)
            } else {
                lex_bounds(a.get(2), a.get(3)).ok_or(ERR_LEX_RANGE)
            };
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    c.err(e);
                    return true;
                }
            };
            if typed::check(c, k, Kind::ZSet).is_ok() {
                let n = get(&c.st.db, k).map_or(0, |z| select(z, &b, false, 0, -1).len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::ZRange => zrange(c, a, 1, false, None, None),
        Cmd::ZRangeStore => zrange(c, a, 2, true, None, None),
        Cmd::ZRevRange => zrange(c, a, 1, false, Some(Type::Rank), Some(true)),
        Cmd::ZRangeByScore => zrange(c, a, 1, false, Some(Type::Score), Some(false)),
        Cmd::ZRevRangeByScore => zrange(c, a, 1, false, Some(Type::Score), Some(true)),
        Cmd::ZRangeByLex => zrange(c, a, 1, false, Some(Type::Lex), Some(false)),
        Cmd::ZRevRangeByLex => zrange(c, a, 1, false, Some(Type::Lex), Some(true)),
        Cmd::ZRank | Cmd::ZRevRank => {
            if typed::check(c, k, Kind::ZSet).is_ok() {
                let z = get(&c.st.db, k);
                match z.and_then(|z| z.rank(a.get(2)).map(|r| (r, z.len()))) {
                    Some((r, n)) if spec.cmd == Cmd::ZRevRank => {
                        reply::int(c.out, (n - 1 - r) as i64)
                    }
                    Some((r, _)) => reply::int(c.out, r as i64),
                    None => reply::nil(c.out),
                }
            }
        }
        Cmd::ZPopMin | Cmd::ZPopMax => zpop(c, spec, a),
        Cmd::ZRemRangeByRank | Cmd::ZRemRangeByScore | Cmd::ZRemRangeByLex => zremrange(c, spec, a),
        Cmd::ZRandMember => zrandmember(c, a),
        Cmd::ZScan => zscan(c, a),
        _ => return false,
    }
    true
}

fn get<'a>(db: &'a Db, k: &[u8]) -> Option<&'a ZSet> {
    match db.peek(k).map(|e| &e.val) {
        Some(Value::ZSet(z)) => Some(z),
        _ => None,
    }
}

fn get_mut<'a>(db: &'a mut Db, k: &[u8]) -> &'a mut ZSet {
    if !matches!(db.peek(k).map(|e| &e.val), Some(Value::ZSet(_))) {
        db.insert(k, Value::ZSet(ZSet::default()), 0);
    }
    match db.value_mut(k) {
        Some(Value::ZSet(z)) => z,
        _ => unreachable!("zset inserted above"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Rank,
    Score,
    Lex,
}

#[derive(Debug, Clone, PartialEq)]
enum Lex {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
enum Bounds {
    Rank(i64, i64),
    /// (min, min exclusive, max, max exclusive)
    Score(f64, bool, f64, bool),
    Lex(Lex, Lex),
}

fn score_bound(s: &[u8]) -> Option<(f64, bool)> {
    match s.strip_prefix(b"(") {
        Some(rest) => Some((parse_double(rest)?, true)),
        None => Some((parse_double(s)?, false)),
    }
}

fn score_bounds(min: &[u8], max: &[u8]) -> Option<Bounds> {
    let (lo, lx) = score_bound(min)?;
    let (hi, hx) = score_bound(max)?;
    Some(Bounds::Score(lo, lx, hi, hx))
}

fn lex_bound(s: &[u8]) -> Option<Lex> {
    match s {
        b"+" => Some(Lex::Max),
        b"-" => Some(Lex::Min),
        [b'[', rest @ ..] => Some(Lex::Incl(rest.to_vec())),
        [b'(', rest @ ..] => Some(Lex::Excl(rest.to_vec())),
        _ => None,
    }
}

fn lex_bounds(min: &[u8], max: &[u8]) -> Option<Bounds> {
    Some(Bounds::Lex(lex_bound(min)?, lex_bound(max)?))
}

fn above_min(m: &[u8], b: &Lex) -> bool {
    match b {
        Lex::Min => true,
        Lex::Max => false,
        Lex::Incl(x) => m >= x.as_slice(),
        Lex::Excl(x) => m > x.as_slice(),
    }
}

fn below_max(m: &[u8], b: &Lex) -> bool {
    match b {
        Lex::Max => true,
        Lex::Min => false,
        Lex::Incl(x) => m <= x.as_slice(),
        Lex::Excl(x) => m < x.as_slice(),
    }
}

fn in_range(b: &Bounds, m: &[u8], s: f64) -> bool {
    match b {
        Bounds::Rank(..) => true,
        Bounds::Score(lo, lx, hi, hx) => {
            (if *lx { s > *lo } else { s >= *lo }) && (if *hx { s < *hi } else { s <= *hi })
        }
        Bounds::Lex(lo, hi) => above_min(m, lo) && below_max(m, hi),
    }
}

/// The members in `b`, in order (`rev` from the top), after `offset`, at most
/// `limit` of them (negative = all); a negative offset selects nothing, as in Redis.
fn select<'a>(z: &'a ZSet, b: &Bounds, rev: bool, offset: i64, limit: i64) -> Vec<(&'a [u8], f64)> {
    if offset < 0 {
        return Vec::new();
    }
    let it: Box<dyn Iterator<Item = (&'a [u8], f64)>> = if rev {
        Box::new(z.tree.iter().rev().map(|(s, m)| (m.as_slice(), s.0)))
    } else {
        Box::new(z.tree.iter().map(|(s, m)| (m.as_slice(), s.0)))
    };
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    match b {
        Bounds::Rank(start, end) => match range(z.len(), *start, *end) {
            None => Vec::new(),
            Some((s, e)) => it.skip(s).take(e - s + 1).collect(),
        },
        _ => it
            .filter(|(m, s)| in_range(b, m, *s))
            .skip(offset as usize)
            .take(take)
            .collect(),
    }
}

/// Members, with their scores if `scores`: flat, or as [member, score]
/// pairs when `nested` (RESP3's shape for them).
fn pairs_reply(out: &mut Vec<u8>, items: &[(&[u8], f64)], scores: bool, nested: bool) {
    let nested = nested && scores;
    reply::array(out, items.len() * if scores && !nested { 2 } else { 1 });
    for (m, s) in items {
        if nested {
            reply::array(out, 2);
        }
        reply::bulk(out, m);
        if scores {
            reply::double(out, &fmt_double(*s));
        }
    }
}

fn zadd(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < a.len() {
        let o = a.get(i);
        let is = |s: &[u8]| o.eq_ignore_ascii_case(s);
        if is(b"NX") {
            nx = true;
        } else if is(b"XX") {
            xx = true;
        } else if is(b"GT") {
            gt = true;
        } else if is(b"LT") {
            lt = true;
        } else if is(b"CH") {
            ch = true;
        } else if is(b"INCR") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = a.len() - i;
    if !rest.is_multiple_of(2) || rest == 0 {
        return c.err(ERR_SYNTAX);
    }
    if nx && xx {
        return c.err("ERR XX and NX options at the same time are not compatible");
    }
    if ((gt || lt) && nx) || (gt && lt) {
        return c.err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && rest > 2 {
        return c.err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest / 2);
    let mut j = i;
    while j < a.len() {
        let Some(s) = parse_double(a.get(j)) else {
            return c.err(ERR_FLOAT);
        };
        pairs.push((s, a.get(j + 1)));
        j += 2;
    }
    let exists = match typed::check(c, k, Kind::ZSet) {
        Err(_) => return,
        Ok(e) => e,
    };
    if !exists && xx {
        return if incr {
            reply::nil(c.out)
        } else {
            reply::int(c.out, 0)
        };
    }
    if !c.key_ok(k) {
        return;
    }
    let z = get_mut(&mut c.st.db, k);
    let (mut added, mut updated, mut delta) = (0i64, 0i64, 0i64);
    let mut result: Option<f64> = None;
    for (s, m) in pairs {
        match z.score(m) {
            Some(cur) => {
                if nx {
                    continue;
                }
                let new = if incr { cur + s } else { s };
                if new.is_nan() {
                    c.st.db.modified(k, delta);
                    return c.err(ERR_NAN);
                }
                if (gt && new <= cur) || (lt && new >= cur) {
                    continue;
                }
                result = Some(new);
                if new != cur {
                    z.insert(m, new);
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(m, s);
                result = Some(s);
                added += 1;
                delta += cost(m);
            }
        }
    }
    c.st.db.modified(k, delta);
    if added + updated > 0 {
        typed::propagate_argv(c, a);
    }
    if incr {
        match result {
            Some(s) => reply::double(c.out, &fmt_double(s)),
            None => reply::nil(c.out),
        }
    } else {
        reply::int(c.out, if ch { added + updated } else { added });
    }
}

fn zincrby(c: &mut Ctx, a: Argv) {
    let (k, m) = (a.get(1), a.get(3));
    let Some(by) = parse_double(a.get(2)) else {
        return c.err(ERR_FLOAT);
    };
    if typed::check(c, k, Kind::ZSet).is_err() || !c.key_ok(k) {
        return;
    }
    let z = get_mut(&mut c.st.db, k);
    let old = z.score(m);
    let new = old.unwrap_or(0.0) + by;
    if new.is_nan() {
        c.st.db.modified(k, 0);
        return c.err(ERR_NAN);
    }
    z.insert(m, new);
    c.st.db.modified(k, if old.is_none() { cost(m) } else { 0 });
    typed::propagate_argv(c, a);
    reply::double(c.out, &fmt_double(new));
}

fn zrem(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    match typed::check(c, k, Kind::ZSet) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let z = get_mut(&mut c.st.db, k);
    let (mut n, mut delta) = (0, 0);
    for m in a.iter().skip(2) {
        if z.remove(m).is_some() {
            n += 1;
            delta -= cost(m);
        }
    }
    if n > 0 {
        c.st.db.modified(k, delta);
        typed::propagate_argv(c, a);
    }
    reply::int(c.out, n);
}

/// ZRANGE and every older form; `at` is the source key's index, `store` for ZRANGESTORE.
fn zrange(c: &mut Ctx, a: Argv, at: usize, store: bool, ty: Option<Type>, rev: Option<bool>) {
    let (mut ty_opt, mut rev_opt) = (ty, rev);
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = at + 3;
    while j < a.len() {
        let o = a.get(j);
        let is = |s: &[u8]| o.eq_ignore_ascii_case(s);
        let left = a.len() - j - 1;
        if !store && is(b"WITHSCORES") {
            withscores = true;
        } else if is(b"LIMIT") && left >= 2 {
            let (Some(off), Some(cnt)) = (parse_i64(a.get(j + 1)), parse_i64(a.get(j + 2))) else {
                return c.err(ERR_NOT_INT);
            };
            offset = off;
            limit = cnt;
            j += 2;
        } else if rev.is_none() && rev_opt.is_none() && is(b"REV") {
            rev_opt = Some(true);
        } else if ty.is_none() && ty_opt.is_none() && is(b"BYLEX") {
            ty_opt = Some(Type::Lex);
        } else if ty.is_none() && ty_opt.is_none() && is(b"BYSCORE") {
            ty_opt = Some(Type::Score);
        } else {
            return c.err(ERR_SYNTAX);
        }
        j += 1;
    }
    let rev = rev_opt.unwrap_or(false);
    let ty = ty_opt.unwrap_or(Type::Rank);
    if limit != -1 && ty == Type::Rank {
        return c.err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && ty == Type::Lex {
        return c.err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (mut lo, mut hi) = (a.get(at + 1), a.get(at + 2));
    if rev && ty != Type::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let b = match ty {
        Type::Rank => match (parse_i64(lo), parse_i64(hi)) {
            (Some(s), Some(e)) => Bounds::Rank(s, e),
            _ => return c.err(ERR_NOT_INT),
        },
        Type::Score => match score_bounds(lo, hi) {
            Some(b) => b,
            None => return c.err(ERR_SCORE_RANGE),
        },
        Type::Lex => match lex_bounds(lo, hi) {
            Some(b) => b,
            None => return c.err(ERR_LEX_RANGE),
        },
    };
    let src = a.get(at);
    if typed::check(c, src, Kind::ZSet).is_err() {
        return;
    }
    let items: Vec<(Vec<u8>, f64)> = match get(&c.st.db, src) {
        None => Vec::new(),
        Some(z) if !store => {
            let sel = select(z, &b, rev, offset, limit);
            return pairs_reply(c.out, &sel, withscores, reply::resp3());
        }
        Some(z) => select(z, &b, rev, offset, limit)
            .into_iter()
            .map(|(m, s)| (m.to_vec(), s))
            .collect(),
    };
    if !store {
        return reply::array(c.out, 0);
    }
    let dst = a.get(1);
    if !c.key_ok(dst) {
        return;
    }
    let n = items.len();
    let existed = c.exists(dst);
    if n == 0 {
        c.st.db.remove(dst);
        if existed && !c.from_master {
            c.st.propagate(&[b"DEL", dst]);
        }
    } else {
        let mut z = ZSet::default();
        for (m, s) in &items {
            z.insert(m, *s);
        }
        c.st.db.insert(dst, Value::ZSet(z), 0);
        typed::propagate_argv(c, a);
    }
    c.st.db.touch(dst);
    reply::int(c.out, n as i64);
}

fn zpop(c: &mut Ctx, spec: &Spec, a: Argv) {
    let k = a.get(1);
    if a.len() > 3 {
        return c.err(ERR_SYNTAX);
    }
    let count = if a.len() == 3 {
        match typed::positive_count(c, a.get(2)) {
            Some(n) => n,
            None => return,
        }
    } else {
        1
    };
    match typed::check(c, k, Kind::ZSet) {
        Err(_) => return,
        Ok(false) => return reply::array(c.out, 0),
        Ok(true) => {}
    }
    if count == 0 {
        return reply::array(c.out, 0);
    }
    let max = spec.cmd == Cmd::ZPopMax;
    let z = get_mut(&mut c.st.db, k);
    let mut popped = Vec::new();
    let mut delta = 0;
    while popped.len() < count {
        let first = if max {
            z.tree.last().cloned()
        } else {
            z.tree.first().cloned()
        };
        let Some((s, m)) = first else {
            break;
        };
        z.remove(&m);
        delta -= cost(&m);
        popped.push((m, s.0));
    }
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    let items: Vec<(&[u8], f64)> = popped.iter().map(|(m, s)| (m.as_slice(), *s)).collect();
    pairs_reply(c.out, &items, true, reply::resp3() && a.len() == 3);
}

/// Removes up to `count` lowest (or highest, `max`) members of the zset at `k`
/// (type already checked), keeping the memory count; what was removed, in order.
pub(super) fn pop_n(c: &mut Ctx, k: &[u8], count: usize, max: bool) -> Vec<(Vec<u8>, f64)> {
    if !matches!(c.st.db.peek(k).map(|e| &e.val), Some(Value::ZSet(_))) {
        return Vec::new();
    }
    let z = get_mut(&mut c.st.db, k);
    let mut popped = Vec::new();
    let mut delta = 0;
    while popped.len() < count {
        let first = if max {
            z.tree.last().cloned()
        } else {
            z.tree.first().cloned()
        };
        let Some((s, m)) = first else {
            break;
        };
        z.remove(&m);
        delta -= cost(&m);
        popped.push((m, s.0));
    }
    c.st.db.modified(k, delta);
    popped
}

fn zremrange(c: &mut Ctx, spec: &Spec, a: Argv) {
    let k = a.get(1);
    let (lo, hi) = (a.get(2), a.get(3));
    let b = match spec.cmd {
        Cmd::ZRemRangeByRank => match (parse_i64(lo), parse_i64(hi)) {
            (Some(s), Some(e)) => Bounds::Rank(s, e),
            _ => return c.err(ERR_NOT_INT),
        },
        Cmd::ZRemRangeByScore => match score_bounds(lo, hi) {
            Some(b) => b,
            None => return c.err(ERR_SCORE_RANGE),
        },
        _ => match lex_bounds(lo, hi) {
            Some(b) => b,
            None => return c.err(ERR_LEX_RANGE),
        },
    };
    match typed::check(c, k, Kind::ZSet) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let gone: Vec<Vec<u8>> = match get(&c.st.db, k) {
        Some(z) => select(z, &b, false, 0, -1)
            .into_iter()
            .map(|(m, _)| m.to_vec())
            .collect(),
        None => Vec::new(),
    };
    if gone.is_empty() {
        return reply::int(c.out, 0);
    }
    let z = get_mut(&mut c.st.db, k);
    let mut delta = 0;
    for m in &gone {
        z.remove(m);
        delta -= cost(m);
    }
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    reply::int(c.out, gone.len() as i64);
}

fn zrandmember(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    if a.len() == 2 {
        if typed::check(c, k, Kind::ZSet).is_ok() {
            match get(&c.st.db, k) {
                Some(z) if !z.is_empty() => {
                    let i = typed::rand_below(z.len());
                    match z.tree.iter().nth(i) {
                        Some((_, m)) => reply::bulk(c.out, m),
                        None => reply::nil(c.out),
                    }
                }
                _ => reply::nil(c.out),
            }
        }
        return;
    }
    let Some((n, with)) = typed::rand_args(c, a, b"WITHSCORES") else {
        return;
    };
    if typed::check(c, k, Kind::ZSet).is_err() {
        return;
    }
    let Some(z) = get(&c.st.db, k) else {
        return reply::array(c.out, 0);
    };
    // Highest score first: Redis walks a zset from its tail when it returns all of it.
    let all: Vec<(&[u8], f64)> = z
        .tree
        .iter()
        .rev()
        .map(|(s, m)| (m.as_slice(), s.0))
        .collect();
    let items: Vec<(&[u8], f64)> = typed::rand_indices(all.len(), n)
        .into_iter()
        .filter_map(|i| all.get(i).copied())
        .collect();
    pairs_reply(c.out, &items, with, reply::resp3());
}

fn zscan(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let Some((cursor, count, pattern)) = typed::scan_args(c, a) else {
        return;
    };
    if typed::check(c, k, Kind::ZSet).is_err() {
        return;
    }
    let Some(z) = get(&c.st.db, k) else {
        return typed::scan_reply(c.out, 0, &[]);
    };
    let small =
        c.st.db
            .peek(k)
            .is_some_and(|e| e.val.encoding(&c.kv.settings) == "listpack");
    let (next, members) = if small {
        // Listpack order: by score.
        typed::scan_names(
            z.tree.iter().map(|(_, m)| m.as_slice()),
            true,
            cursor,
            count,
            pattern,
        )
    } else {
        typed::scan_names(
            z.dict.keys().map(|m| m.as_slice()),
            false,
            cursor,
            count,
            pattern,
        )
    };
    let scores: Vec<String> = members
        .iter()
        .map(|m| fmt_double(z.score(m).unwrap_or(0.0)))
        .collect();
    let mut items: Vec<&[u8]> = Vec::with_capacity(members.len() * 2);
    for (m, s) in members.iter().zip(&scores) {
        items.push(m);
        items.push(s.as_bytes());
    }
    typed::scan_reply(c.out, next, &items);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_like_redis() {
        assert_eq!(
            score_bounds(b"(1", b"+inf"),
            Some(Bounds::Score(1.0, true, f64::INFINITY, false))
        );
        assert_eq!(score_bounds(b"x", b"1"), None);
        assert_eq!(
            lex_bounds(b"-", b"[b"),
            Some(Bounds::Lex(Lex::Min, Lex::Incl(b"b".to_vec())))
        );
        assert_eq!(lex_bounds(b"a", b"+"), None);
        assert_eq!(lex_bounds(b"+x", b"+"), None);
    }

    #[test]
    fn select_by_score_rank_and_lex() {
        let mut z = ZSet::default();
        for (m, s) in [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)] {
            z.insert(m.as_bytes(), s);
        }
        let names =
            |v: Vec<(&[u8], f64)>| v.into_iter().map(|(m, _)| m.to_vec()).collect::<Vec<_>>();
        let b = score_bounds(b"(1", b"3").unwrap();
        assert_eq!(
            names(select(&z, &b, false, 0, -1)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(names(select(&z, &b, true, 1, 1)), vec![b"b".to_vec()]);
        assert_eq!(
            names(select(&z, &Bounds::Rank(-2, -1), true, 0, -1)),
            vec![b"b".to_vec(), b"a".to_vec()]
        );
        let l = lex_bounds(b"[b", b"(d").unwrap();
        assert_eq!(
            names(select(&z, &l, false, 0, -1)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
    }
}
