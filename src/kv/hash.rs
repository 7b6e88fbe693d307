//! Hash commands, as Redis 7.0 answers them: HSET, HSETNX, HMSET, HGET, HMGET,
//! HDEL, HGETALL, HKEYS, HVALS, HLEN, HEXISTS, HSTRLEN, HINCRBY,
//! HINCRBYFLOAT, HRANDFIELD, HSCAN.

use super::command::{wrong_arity, Cmd, Ctx, Spec, ERR_NOT_INT};
use super::command_more::fmt_float;
use super::db::Db;
use super::frame::{fmt_i64, parse_i64, reply, Argv};
use super::typed::{self, Kind};
use super::value::{parse_double, Value, ELEM_OVERHEAD};
use indexmap::IndexMap;

type Hash = IndexMap<Vec<u8>, Vec<u8>>;

/// Runs one hash command; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let k = a.get(1);
    match spec.cmd {
        Cmd::HSet | Cmd::HMSet => hset(c, spec, a),
        Cmd::HSetNx => hsetnx(c, a),
        Cmd::HGet => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                match get(&c.st.db, k).and_then(|h| h.get(a.get(2))) {
                    Some(v) => reply::bulk(c.out, v),
                    None => reply::nil(c.out),
                }
            }
        }
        Cmd::HMGet => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                let h = get(&c.st.db, k);
                reply::array(c.out, a.len() - 2);
                for f in a.iter().skip(2) {
                    match h.and_then(|h| h.get(f)) {
                        Some(v) => reply::bulk(c.out, v),
                        None => reply::nil(c.out),
                    }
                }
            }
        }
        Cmd::HDel => hdel(c, a),
        Cmd::HGetAll | Cmd::HKeys | Cmd::HVals => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                let (keys, vals) = match spec.cmd {
                    Cmd::HGetAll => (true, true),
                    Cmd::HKeys => (true, false),
                    _ => (false, true),
                };
                match get(&c.st.db, k) {
                    None => reply::array(c.out, 0),
                    Some(h) => {
                        if keys && vals {
                            reply::map(c.out, h.len());
                        } else {
                            reply::array(c.out, h.len());
                        }
                        for (f, v) in h {
                            if keys {
                                reply::bulk(c.out, f);
                            }
                            if vals {
                                reply::bulk(c.out, v);
                            }
                        }
                    }
                }
            }
        }
        Cmd::HLen => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                let n = get(&c.st.db, k).map_or(0, |h| h.len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::HExists => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                let n = get(&c.st.db, k).is_some_and(|h| h.contains_key(a.get(2)));
                reply::int(c.out, n as i64);
            }
        }
        Cmd::HStrLen => {
            if typed::check(c, k, Kind::Hash).is_ok() {
                let n = get(&c.st.db, k)
                    .and_then(|h| h.get(a.get(2)))
                    .map_or(0, |v| v.len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::HIncrBy => hincrby(c, a),
        Cmd::HIncrByFloat => hincrbyfloat(c, a),
        Cmd::HRandField => hrandfield(c, a),
        Cmd::HScan => hscan(c, a),
        _ => return false,
    }
    true
}

fn get<'a>(db: &'a Db, k: &[u8]) -> Option<&'a Hash> {
    match db.peek(k).map(|e| &e.val) {
        Some(Value::Hash(h)) => Some(h),
        _ => None,
    }
}

/// The hash at `k`, created empty when absent (the caller checked the type).
fn get_mut<'a>(db: &'a mut Db, k: &[u8]) -> &'a mut Hash {
    if !matches!(db.peek(k).map(|e| &e.val), Some(Value::Hash(_))) {
        db.insert(k, Value::Hash(Hash::new()), 0);
    }
    match db.value_mut(k) {
        Some(Value::Hash(h)) => h,
        // Just inserted above; this arm is never taken.
        _ => unreachable!("hash inserted above"),
    }
}

/// Sets one field; returns (new field?, byte delta).
fn put(h: &mut Hash, f: &[u8], v: &[u8]) -> (bool, i64) {
    match h.get_mut(f) {
        Some(old) => {
            let d = v.len() as i64 - old.len() as i64;
            old.clear();
            old.extend_from_slice(v);
            (false, d)
        }
        None => {
            h.insert(f.to_vec(), v.to_vec());
            (true, (f.len() + v.len()) as i64 + ELEM_OVERHEAD as i64)
        }
    }
}

/// Removes one field keeping the others' order while the hash is small
/// (listpack order, which Redis replies in); O(1) once it is big.
fn take(h: &mut Hash, f: &[u8]) -> Option<Vec<u8>> {
    if h.len() <= 512 {
        h.shift_remove(f)
    } else {
        h.swap_remove(f)
    }
}

fn hset(c: &mut Ctx, spec: &Spec, a: Argv) {
    if !a.len().is_multiple_of(2) {
        return wrong_arity(c.out, spec.name);
    }
    let k = a.get(1);
    if typed::check(c, k, Kind::Hash).is_err() || !c.key_ok(k) {
        return;
    }
    let h = get_mut(&mut c.st.db, k);
    let (mut added, mut delta) = (0, 0);
    let mut i = 2;
    while i < a.len() {
        let (new, d) = put(h, a.get(i), a.get(i + 1));
        added += new as i64;
        delta += d;
        i += 2;
    }
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    if spec.cmd == Cmd::HMSet {
        reply::ok(c.out);
    } else {
        reply::int(c.out, added);
    }
}

fn hsetnx(c: &mut Ctx, a: Argv) {
    let (k, f) = (a.get(1), a.get(2));
    if typed::check(c, k, Kind::Hash).is_err() || !c.key_ok(k) {
        return;
    }
    if get(&c.st.db, k).is_some_and(|h| h.contains_key(f)) {
        return reply::int(c.out, 0);
    }
    let (_, d) = put(get_mut(&mut c.st.db, k), f, a.get(3));
    c.st.db.modified(k, d);
    typed::propagate_argv(c, a);
    reply::int(c.out, 1);
}

fn hdel(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    match typed::check(c, k, Kind::Hash) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let h = get_mut(&mut c.st.db, k);
    let (mut n, mut delta) = (0, 0i64);
    for f in a.iter().skip(2) {
        if let Some(v) = take(h, f) {
            n += 1;
            delta -= (f.len() + v.len()) as i64 + ELEM_OVERHEAD as i64;
        }
    }
    if n > 0 {
        c.st.db.modified(k, delta);
        typed::propagate_argv(c, a);
    }
    reply::int(c.out, n);
}

fn hincrby(c: &mut Ctx, a: Argv) {
    let (k, f) = (a.get(1), a.get(2));
    let Some(by) = parse_i64(a.get(3)) else {
        return c.err(ERR_NOT_INT);
    };
    if typed::check(c, k, Kind::Hash).is_err() {
        return;
    }
    let cur = match get(&c.st.db, k).and_then(|h| h.get(f)) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => return c.err("ERR hash value is not an integer"),
        },
    };
    let Some(new) = cur.checked_add(by) else {
        return c.err("ERR increment or decrement would overflow");
    };
    if !c.key_ok(k) {
        return;
    }
    let mut b = [0u8; 20];
    let s = fmt_i64(new, &mut b);
    let (_, d) = put(get_mut(&mut c.st.db, k), f, s);
    c.st.db.modified(k, d);
    typed::propagate_argv(c, a);
    reply::int(c.out, new);
}

fn hincrbyfloat(c: &mut Ctx, a: Argv) {
    let (k, f) = (a.get(1), a.get(2));
    let Some(by) = parse_double(a.get(3)) else {
        return c.err("ERR value is not a valid float");
    };
    if by.is_infinite() {
        return c.err("ERR value is NaN or Infinity");
    }
    if typed::check(c, k, Kind::Hash).is_err() {
        return;
    }
    let cur = match get(&c.st.db, k).and_then(|h| h.get(f)) {
        None => 0.0,
        Some(v) => match parse_double(v) {
            Some(n) => n,
            None => return c.err("ERR hash value is not a float"),
        },
    };
    let new = cur + by;
    if !new.is_finite() {
        return c.err("ERR increment would produce NaN or Infinity");
    }
    if !c.key_ok(k) {
        return;
    }
    let s = fmt_float(new);
    let (_, d) = put(get_mut(&mut c.st.db, k), f, s.as_bytes());
    c.st.db.modified(k, d);
    // As Redis: replicated as HSET of the result, so replicas hold the same bytes.
    c.propagate(&[b"HSET", k, f, s.as_bytes()]);
    reply::bulk(c.out, s.as_bytes());
}

fn hrandfield(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    if a.len() == 2 {
        if typed::check(c, k, Kind::Hash).is_ok() {
            match get(&c.st.db, k) {
                Some(h) => match h.get_index(typed::rand_below(h.len())) {
                    Some((f, _)) => reply::bulk(c.out, f),
                    None => reply::nil(c.out),
                },
                None => reply::nil(c.out),
            }
        }
        return;
    }
    let Some((n, with)) = typed::rand_args(c, a, b"WITHVALUES") else {
        return;
    };
    if typed::check(c, k, Kind::Hash).is_err() {
        return;
    }
    let Some(h) = get(&c.st.db, k) else {
        return reply::array(c.out, 0);
    };
    let idx = typed::rand_indices(h.len(), n);
    // RESP3 pairs each field with its value.
    let nested = with && reply::resp3();
    reply::array(c.out, idx.len() * if with && !nested { 2 } else { 1 });
    for i in idx {
        if let Some((f, v)) = h.get_index(i) {
            if nested {
                reply::array(c.out, 2);
            }
            reply::bulk(c.out, f);
            if with {
                reply::bulk(c.out, v);
            }
        }
    }
}

fn hscan(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let Some((cursor, count, pattern)) = typed::scan_args(c, a) else {
        return;
    };
    if typed::check(c, k, Kind::Hash).is_err() {
        return;
    }
    let Some(h) = get(&c.st.db, k) else {
        return typed::scan_reply(c.out, 0, &[]);
    };
    let small =
        c.st.db
            .peek(k)
            .is_some_and(|e| e.val.encoding(&c.kv.settings) == "listpack");
    let (next, fields) = typed::scan_names(
        h.keys().map(|f| f.as_slice()),
        small,
        cursor,
        count,
        pattern,
    );
    let mut items = Vec::with_capacity(fields.len() * 2);
    for f in fields {
        if let Some(v) = h.get(f) {
            items.push(f);
            items.push(v.as_slice());
        }
    }
    typed::scan_reply(c.out, next, &items);
}
