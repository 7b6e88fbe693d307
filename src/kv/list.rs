//! List commands, as Redis 7.0 answers them: LPUSH, RPUSH, LPUSHX, RPUSHX,
//! LPOP, RPOP (with count), LLEN, LRANGE, LINDEX, LSET, LREM, LTRIM, LINSERT,
//! LPOS, LMOVE, RPOPLPUSH.

use super::command::{wrong_arity, Cmd, Ctx, Spec, ERR_SYNTAX};
use super::db::Db;
use super::frame::{reply, Argv};
use super::typed::{self, Kind};
use super::value::{Value, ELEM_OVERHEAD};
use std::collections::VecDeque;

type List = VecDeque<Vec<u8>>;

fn cost(v: &[u8]) -> i64 {
    v.len() as i64 + ELEM_OVERHEAD as i64
}

/// Runs one list command; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let k = a.get(1);
    match spec.cmd {
        Cmd::LPush | Cmd::RPush | Cmd::LPushX | Cmd::RPushX => push(c, spec, a),
        Cmd::LPop | Cmd::RPop => pop(c, spec, a),
        Cmd::LLen => {
            if typed::check(c, k, Kind::List).is_ok() {
                let n = get(&c.st.db, k).map_or(0, |l| l.len());
                reply::int(c.out, n as i64);
            }
        }
        Cmd::LRange => lrange(c, a),
        Cmd::LIndex => {
            let Some(i) = typed::int(c, a.get(2)) else {
                return true;
            };
            if typed::check(c, k, Kind::List).is_ok() {
                let l = get(&c.st.db, k);
                match l.and_then(|l| index(l.len(), i).and_then(|i| l.get(i))) {
                    Some(v) => reply::bulk(c.out, v),
                    None => reply::nil(c.out),
                }
            }
        }
        Cmd::LSet => lset(c, a),
        Cmd::LRem => lrem(c, a),
        Cmd::LTrim => ltrim(c, a),
        Cmd::LInsert => linsert(c, a),
        Cmd::LPos => lpos(c, a),
        Cmd::LMove | Cmd::RPopLPush => lmove(c, spec, a),
        _ => return false,
    }
    true
}

fn get<'a>(db: &'a Db, k: &[u8]) -> Option<&'a List> {
    match db.peek(k).map(|e| &e.val) {
        Some(Value::List(l)) => Some(l),
        _ => None,
    }
}

fn get_mut<'a>(db: &'a mut Db, k: &[u8]) -> &'a mut List {
    if !matches!(db.peek(k).map(|e| &e.val), Some(Value::List(_))) {
        db.insert(k, Value::List(List::new()), 0);
    }
    match db.value_mut(k) {
        Some(Value::List(l)) => l,
        _ => unreachable!("list inserted above"),
    }
}

/// A Redis index (negative from the tail) as a position, if inside `len`.
fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

/// Redis's start/stop range over `len` elements, inclusive; None when empty.
pub fn range(len: usize, mut start: i64, mut end: i64) -> Option<(usize, usize)> {
    let n = len as i64;
    if start < 0 {
        start += n;
    }
    if end < 0 {
        end += n;
    }
    start = start.max(0);
    if start > end || start >= n {
        return None;
    }
    end = end.min(n - 1);
    Some((start as usize, end as usize))
}

fn push(c: &mut Ctx, spec: &Spec, a: Argv) {
    let k = a.get(1);
    let left = matches!(spec.cmd, Cmd::LPush | Cmd::LPushX);
    let only_existing = matches!(spec.cmd, Cmd::LPushX | Cmd::RPushX);
    let exists = match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(e) => e,
    };
    if only_existing && !exists {
        return reply::int(c.out, 0);
    }
    if !c.key_ok(k) {
        return;
    }
    let l = get_mut(&mut c.st.db, k);
    let mut delta = 0;
    for v in a.iter().skip(2) {
        delta += cost(v);
        if left {
            l.push_front(v.to_vec());
        } else {
            l.push_back(v.to_vec());
        }
    }
    let n = l.len();
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    reply::int(c.out, n as i64);
}

fn pop(c: &mut Ctx, spec: &Spec, a: Argv) {
    let k = a.get(1);
    if a.len() > 3 {
        return wrong_arity(c.out, spec.name);
    }
    let count = if a.len() == 3 {
        match typed::positive_count(c, a.get(2)) {
            Some(n) => Some(n),
            None => return,
        }
    } else {
        None
    };
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) if count.is_some() => return reply::nil_array(c.out),
        Ok(false) => return reply::nil(c.out),
        Ok(true) => {}
    }
    if count == Some(0) {
        return reply::array(c.out, 0);
    }
    let left = spec.cmd == Cmd::LPop;
    let l = get_mut(&mut c.st.db, k);
    let n = count.unwrap_or(1).min(l.len());
    let mut delta = 0;
    let mut popped = Vec::with_capacity(n);
    for _ in 0..n {
        let v = if left { l.pop_front() } else { l.pop_back() };
        if let Some(v) = v {
            delta -= cost(&v);
            popped.push(v);
        }
    }
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    match count {
        None => match popped.first() {
            Some(v) => reply::bulk(c.out, v),
            None => reply::nil(c.out),
        },
        Some(_) => {
            reply::array(c.out, popped.len());
            for v in &popped {
                reply::bulk(c.out, v);
            }
        }
    }
}

fn lrange(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let (Some(start), Some(end)) = (typed::int(c, a.get(2)), typed::int(c, a.get(3))) else {
        return;
    };
    if typed::check(c, k, Kind::List).is_err() {
        return;
    }
    let l = get(&c.st.db, k);
    match l.and_then(|l| range(l.len(), start, end).map(|r| (l, r))) {
        None => reply::array(c.out, 0),
        Some((l, (s, e))) => {
            reply::array(c.out, e - s + 1);
            for v in l.range(s..=e) {
                reply::bulk(c.out, v);
            }
        }
    }
}

fn lset(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) => return c.err("ERR no such key"),
        Ok(true) => {}
    }
    let Some(i) = typed::int(c, a.get(2)) else {
        return;
    };
    let v = a.get(3);
    let l = get_mut(&mut c.st.db, k);
    let Some(slot) = index(l.len(), i).and_then(|i| l.get_mut(i)) else {
        return c.err("ERR index out of range");
    };
    let delta = v.len() as i64 - slot.len() as i64;
    *slot = v.to_vec();
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    reply::ok(c.out);
}

fn lrem(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let Some(count) = typed::int(c, a.get(2)) else {
        return;
    };
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let v = a.get(3);
    let l = get_mut(&mut c.st.db, k);
    let max = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0usize;
    if count >= 0 {
        let mut i = 0;
        while i < l.len() && removed < max {
            if l[i] == v {
                l.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
    } else {
        let mut i = l.len();
        while i > 0 && removed < max {
            i -= 1;
            if l[i] == v {
                l.remove(i);
                removed += 1;
            }
        }
    }
    if removed > 0 {
        c.st.db.modified(k, -(removed as i64) * cost(v));
        typed::propagate_argv(c, a);
    }
    reply::int(c.out, removed as i64);
}

fn ltrim(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let (Some(start), Some(end)) = (typed::int(c, a.get(2)), typed::int(c, a.get(3))) else {
        return;
    };
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) => return reply::ok(c.out),
        Ok(true) => {}
    }
    let l = get_mut(&mut c.st.db, k);
    let mut delta = 0;
    match range(l.len(), start, end) {
        None => {
            delta -= l.iter().map(|v| cost(v)).sum::<i64>();
            l.clear();
        }
        Some((s, e)) => {
            for v in l.drain(e + 1..) {
                delta -= cost(&v);
            }
            for v in l.drain(..s) {
                delta -= cost(&v);
            }
        }
    }
    c.st.db.modified(k, delta);
    typed::propagate_argv(c, a);
    reply::ok(c.out);
}

fn linsert(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let w = a.get(2);
    let after = if w.eq_ignore_ascii_case(b"AFTER") {
        true
    } else if w.eq_ignore_ascii_case(b"BEFORE") {
        false
    } else {
        return c.err(ERR_SYNTAX);
    };
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) => return reply::int(c.out, 0),
        Ok(true) => {}
    }
    let (pivot, v) = (a.get(3), a.get(4));
    let l = get_mut(&mut c.st.db, k);
    let Some(i) = l.iter().position(|e| e == pivot) else {
        return reply::int(c.out, -1);
    };
    l.insert(if after { i + 1 } else { i }, v.to_vec());
    let n = l.len();
    c.st.db.modified(k, cost(v));
    typed::propagate_argv(c, a);
    reply::int(c.out, n as i64);
}

fn lpos(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let elem = a.get(2);
    let (mut rank, mut count, mut maxlen): (i64, Option<usize>, usize) = (1, None, 0);
    let mut i = 3;
    while i < a.len() {
        let o = a.get(i);
        let more = i + 1 < a.len();
        if o.eq_ignore_ascii_case(b"RANK") && more {
            let Some(r) = typed::int(c, a.get(i + 1)) else {
                return;
            };
            if r == 0 {
                return c.err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
            }
            if r == i64::MIN {
                return c.err("ERR value is out of range");
            }
            rank = r;
        } else if o.eq_ignore_ascii_case(b"COUNT") && more {
            match super::frame::parse_i64(a.get(i + 1)) {
                None => return c.err(super::command::ERR_NOT_INT),
                Some(n) if n < 0 => return c.err("ERR COUNT can't be negative"),
                Some(n) => count = Some(n as usize),
            }
        } else if o.eq_ignore_ascii_case(b"MAXLEN") && more {
            match super::frame::parse_i64(a.get(i + 1)) {
                None => return c.err(super::command::ERR_NOT_INT),
                Some(n) if n < 0 => return c.err("ERR MAXLEN can't be negative"),
                Some(n) => maxlen = n as usize,
            }
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 2;
    }
    match typed::check(c, k, Kind::List) {
        Err(_) => return,
        Ok(false) if count.is_some() => return reply::array(c.out, 0),
        Ok(false) => return reply::nil(c.out),
        Ok(true) => {}
    }
    let Some(l) = get(&c.st.db, k) else {
        return reply::nil(c.out);
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let limit = if maxlen == 0 { l.len() } else { maxlen };
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..l.len())
    } else {
        Box::new((0..l.len()).rev())
    };
    for p in positions.take(limit) {
        if l[p] == elem {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(p);
            if found.len() >= want {
                break;
            }
        }
    }
    match count {
        None => match found.first() {
            Some(&p) => reply::int(c.out, p as i64),
            None => reply::nil(c.out),
        },
        Some(_) => {
            reply::array(c.out, found.len());
            for p in found {
                reply::int(c.out, p as i64);
            }
        }
    }
}

fn lmove(c: &mut Ctx, spec: &Spec, a: Argv) {
    let (src, dst) = (a.get(1), a.get(2));
    let (from_left, to_left) = if spec.cmd == Cmd::RPopLPush {
        (false, true)
    } else {
        let side = |s: &[u8]| {
            if s.eq_ignore_ascii_case(b"LEFT") {
                Some(true)
            } else if s.eq_ignore_ascii_case(b"RIGHT") {
                Some(false)
            } else {
                None
            }
        };
        match (side(a.get(3)), side(a.get(4))) {
            (Some(f), Some(t)) => (f, t),
            _ => return c.err(ERR_SYNTAX),
        }
    };
    match typed::check(c, src, Kind::List) {
        Err(_) => return,
        Ok(false) => return reply::nil(c.out),
        Ok(true) => {}
    }
    if typed::check(c, dst, Kind::List).is_err() || !c.key_ok(dst) {
        return;
    }
    let l = get_mut(&mut c.st.db, src);
    let Some(v) = (if from_left {
        l.pop_front()
    } else {
        l.pop_back()
    }) else {
        return reply::nil(c.out);
    };
    c.st.db.modified(src, -cost(&v));
    let d = get_mut(&mut c.st.db, dst);
    if to_left {
        d.push_front(v.clone());
    } else {
        d.push_back(v.clone());
    }
    c.st.db.modified(dst, cost(&v));
    typed::propagate_argv(c, a);
    reply::bulk(c.out, &v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(range(5, 0, -1), Some((0, 4)));
        assert_eq!(range(5, -2, 100), Some((3, 4)));
        assert_eq!(range(5, 3, 1), None);
        assert_eq!(range(5, 5, 10), None);
        assert_eq!(range(5, -100, 0), Some((0, 0)));
        assert_eq!(range(0, 0, -1), None);
        assert_eq!(index(3, -1), Some(2));
        assert_eq!(index(3, 3), None);
    }
}
