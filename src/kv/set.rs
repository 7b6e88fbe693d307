//! Set commands, as Redis 7.0 answers them: SADD, SREM, SMEMBERS, SISMEMBER,
//! SMISMEMBER, SCARD, SPOP, SRANDMEMBER, SINTER, SUNION, SDIFF and their
//! *STORE forms, SINTERCARD, SMOVE, SSCAN.

use super::command::{Cmd, Ctx, Spec, ERR_SYNTAX};
use super::db::Db;
use super::frame::{parse_i64, reply, Argv};
use super::typed::{self, Kind};
use super::value::{intset_int, is_intset, Value, ELEM_OVERHEAD};
use indexmap::IndexSet;

type Set = IndexSet<Vec<u8>>;

fn cost(v: &[u8]) -> i64 {
    v.len() as i64 + ELEM_OVERHEAD as i64
}

/// Runs one set command; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let k = a.get(1);
    match spec.cmd {
        Cmd::SAdd => sadd(c, a),
        Cmd::SRem => srem(c, a),
        Cmd::SMembers => {
            if typed::check(c, k, Kind::Set).is_ok() {
                match get(&c.st.db, k) {
                    None => reply::array(c.out, 0),
                    Some(s) => members_reply(c.out, s.iter()),
                }
            }
        }
        Cmd::SIsMember => {
            if typed::check(c, k, Kind::Set).is_ok() {
                let n = get(&c.st.db, k).is_some_and(|s| s.contains(a.get(2)));
                reply::int(c.out, n as i64);
            }
        }
        Cmd::SMIsMember => {
            if typed::check(c, k, Kind::Set).is_ok() {
                let s = get(&c.st.db, k);
                reply::array(c.out, a.len() - 2);
                for m in a.iter().skip(2) {
                    reply::int(c.out, s.is_some_and(|s| s.contains(m)) as i64);
                }
            }
        }
        Cmd::SCard => {
            if typed::check(c, k, Kind::Set).is_ok() {
                let n = get(&c.st.db, k).map_or(0, |s| s.len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::SPop => spop(c, a),
        Cmd::SRandMember => srandmember(c, a),
        Cmd::SInter | Cmd::SUnion | Cmd::SDiff => {
            let keys: Vec<&[u8]> = a.iter().skip(1).collect();
            if let Some(r) = combine(c, spec.cmd, &keys) {
                members_reply(c.out, r.iter());
            }
        }
        Cmd::SInterStore | Cmd::SUnionStore | Cmd::SDiffStore => store(c, spec, a),
        Cmd::SInterCard => sintercard(c, a),
        Cmd::SMove => smove(c, a),
        Cmd::SScan => sscan(c, a),
        _ => return false,
    }
    true
}

fn get<'a>(db: &'a Db, k: &[u8]) -> Option<&'a Set> {
    match db.peek(k).map(|e| &e.val) {
        Some(Value::Set(s)) => Some(s),
        _ => None,
    }
}

fn get_mut<'a>(db: &'a mut Db, k: &[u8]) -> &'a mut Set {
    if !matches!(db.peek(k).map(|e| &e.val), Some(Value::Set(_))) {
        db.insert(k, Value::Set(Set::new()), 0);
    }
    match db.value_mut(k) {
        Some(Value::Set(s)) => s,
        _ => unreachable!("set inserted above"),
    }
}

/// Members in Redis's order where it has one: an intset replies sorted by value.
fn members_reply<'a>(out: &mut Vec<u8>, it: impl Iterator<Item = &'a Vec<u8>> + Clone) {
    let v: Vec<&Vec<u8>> = it.collect();
    let n = v.len();
    reply::set(out, n);
    if n <= 512 && v.iter().all(|m| intset_int(m).is_some()) {
        let mut ints: Vec<(i64, &Vec<u8>)> =
            v.iter().map(|m| (intset_int(m).unwrap_or(0), *m)).collect();
        ints.sort_unstable();
        for (_, m) in ints {
            reply::bulk(out, m);
        }
    } else {
        for m in v {
            reply::bulk(out, m);
        }
    }
}

fn sadd(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    if typed::check(c, k, Kind::Set).is_err() || !c.key_ok(k) {
        return;
    }
    let s = get_mut(&mut c.st.db, k);
    let (mut n, mut delta) = (0, 0);
    for m in a.iter().skip(2) {
        if s.insert(m.to_vec()) {
            n += 1;
            delta += cost(m);
        }
    }
    c.st.db.modified(k, delta);
    if n > 0 {
        typed::propagate_argv(c, a);
    }
    reply::int(c.out, n);
}

fn srem(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    match typed::check(c, k, Kind::Set) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let s = get_mut(&mut c.st.db, k);
    let (mut n, mut delta) = (0, 0);
    for m in a.iter().skip(2) {
        if s.swap_remove(m) {
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

fn spop(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    if a.len() > 3 {
        return c.err(ERR_SYNTAX);
    }
    let count = if a.len() == 3 {
        match typed::positive_count(c, a.get(2)) {
            Some(n) => Some(n),
            None => return,
        }
    } else {
        None
    };
    match typed::check(c, k, Kind::Set) {
        Err(_) => return,
        Ok(false) if count.is_some() => return reply::array(c.out, 0),
        Ok(false) => return reply::nil(c.out),
        Ok(true) => {}
    }
    let s = get_mut(&mut c.st.db, k);
    let n = count.unwrap_or(1).min(s.len());
    let mut popped = Vec::with_capacity(n);
    let mut delta = 0;
    for _ in 0..n {
        let i = typed::rand_below(s.len());
        if let Some(m) = s.swap_remove_index(i) {
            delta -= cost(&m);
            popped.push(m);
        }
    }
    c.st.db.modified(k, delta);
    // Random choice: replicas and the AOF get the members removed, as Redis sends them.
    if !popped.is_empty() && !c.from_master {
        let mut args: Vec<&[u8]> = vec![b"SREM", k];
        args.extend(popped.iter().map(|m| m.as_slice()));
        c.st.propagate(&args);
    }
    match count {
        None => match popped.first() {
            Some(m) => reply::bulk(c.out, m),
            None => reply::nil(c.out),
        },
        Some(_) => {
            reply::array(c.out, popped.len());
            for m in &popped {
                reply::bulk(c.out, m);
            }
        }
    }
}

fn srandmember(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    if a.len() > 3 {
        return c.err(ERR_SYNTAX);
    }
    if a.len() == 2 {
        if typed::check(c, k, Kind::Set).is_ok() {
            match get(&c.st.db, k).and_then(|s| s.get_index(typed::rand_below(s.len()))) {
                Some(m) => reply::bulk(c.out, m),
                None => reply::nil(c.out),
            }
        }
        return;
    }
    let Some(n) = typed::int(c, a.get(2)) else {
        return;
    };
    if n == i64::MIN {
        return c.err("ERR value is out of range");
    }
    if typed::check(c, k, Kind::Set).is_err() {
        return;
    }
    let Some(s) = get(&c.st.db, k) else {
        return reply::array(c.out, 0);
    };
    let idx = typed::rand_indices(s.len(), n);
    if n >= 0 && idx.len() == s.len() {
        return members_reply(c.out, s.iter());
    }
    reply::array(c.out, idx.len());
    for i in idx {
        if let Some(m) = s.get_index(i) {
            reply::bulk(c.out, m);
        }
    }
}

/// SINTER/SUNION/SDIFF of `keys` (missing keys are empty sets); None after WRONGTYPE.
fn combine(c: &mut Ctx, op: Cmd, keys: &[&[u8]]) -> Option<Set> {
    typed::check_all(c, keys.iter().copied(), Kind::Set).ok()?;
    let empty = Set::new();
    let sets: Vec<&Set> = keys
        .iter()
        .map(|k| get(&c.st.db, k).unwrap_or(&empty))
        .collect();
    let out = match op {
        Cmd::SInter | Cmd::SInterStore => {
            let Some(smallest) = sets.iter().min_by_key(|s| s.len()) else {
                return Some(Set::new());
            };
            smallest
                .iter()
                .filter(|m| sets.iter().all(|s| s.contains(*m)))
                .cloned()
                .collect()
        }
        Cmd::SUnion | Cmd::SUnionStore => {
            let mut u = Set::new();
            for s in &sets {
                u.extend(s.iter().cloned());
            }
            u
        }
        _ => match sets.split_first() {
            None => Set::new(),
            Some((first, rest)) => first
                .iter()
                .filter(|m| !rest.iter().any(|s| s.contains(*m)))
                .cloned()
                .collect(),
        },
    };
    Some(out)
}

fn store(c: &mut Ctx, spec: &Spec, a: Argv) {
    let dst = a.get(1);
    let keys: Vec<&[u8]> = a.iter().skip(2).collect();
    let Some(r) = combine(c, spec.cmd, &keys) else {
        return;
    };
    if !c.key_ok(dst) {
        return;
    }
    let n = r.len();
    let existed = c.exists(dst);
    if n == 0 {
        c.st.db.remove(dst);
        if existed && !c.from_master {
            c.st.propagate(&[b"DEL", dst]);
        }
    } else {
        c.st.db.insert(dst, Value::Set(r), 0);
        typed::propagate_argv(c, a);
    }
    c.st.db.touch(dst);
    reply::int(c.out, n as i64);
}

fn sintercard(c: &mut Ctx, a: Argv) {
    let numkeys = parse_i64(a.get(1)).unwrap_or(0);
    if numkeys <= 0 {
        return c.err("ERR numkeys should be greater than 0");
    }
    if numkeys as u64 > (a.len() - 2) as u64 {
        return c.err("ERR Number of keys can't be greater than number of args");
    }
    let nk = numkeys as usize;
    let mut limit = 0usize;
    let mut i = 2 + nk;
    while i < a.len() {
        if a.get(i).eq_ignore_ascii_case(b"LIMIT") && i + 1 < a.len() {
            match parse_i64(a.get(i + 1)) {
                Some(l) if l >= 0 => limit = l as usize,
                // Redis words a non-integer the same way.
                _ => return c.err("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return c.err(ERR_SYNTAX);
        }
    }
    let keys: Vec<&[u8]> = (2..2 + nk).map(|i| a.get(i)).collect();
    let Some(r) = combine(c, Cmd::SInter, &keys) else {
        return;
    };
    let n = if limit > 0 {
        r.len().min(limit)
    } else {
        r.len()
    };
    reply::int(c.out, n as i64);
}

fn smove(c: &mut Ctx, a: Argv) {
    let (src, dst, m) = (a.get(1), a.get(2), a.get(3));
    let Ok(src_exists) = typed::check(c, src, Kind::Set) else {
        return;
    };
    if typed::check(c, dst, Kind::Set).is_err() {
        return;
    }
    if !src_exists || !get(&c.st.db, src).is_some_and(|s| s.contains(m)) {
        return reply::int(c.out, 0);
    }
    if src == dst {
        return reply::int(c.out, 1);
    }
    if !c.key_ok(dst) {
        return;
    }
    get_mut(&mut c.st.db, src).swap_remove(m);
    c.st.db.modified(src, -cost(m));
    let added = get_mut(&mut c.st.db, dst).insert(m.to_vec());
    c.st.db.modified(dst, if added { cost(m) } else { 0 });
    typed::propagate_argv(c, a);
    reply::int(c.out, 1);
}

fn sscan(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let Some((cursor, count, pattern)) = typed::scan_args(c, a) else {
        return;
    };
    if typed::check(c, k, Kind::Set).is_err() {
        return;
    }
    let Some(s) = get(&c.st.db, k) else {
        return typed::scan_reply(c.out, 0, &[]);
    };
    let max =
        c.kv.settings
            .set_max_intset_entries
            .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let small = is_intset(s, max);
    let (next, mut items) = typed::scan_names(
        s.iter().map(|m| m.as_slice()),
        small,
        cursor,
        count,
        pattern,
    );
    if small {
        items.sort_by_key(|m| intset_int(m).unwrap_or(0));
    }
    typed::scan_reply(c.out, next, &items);
}
