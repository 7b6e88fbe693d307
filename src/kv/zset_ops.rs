//! Sorted-set algebra, as Redis 7.0 answers it: ZUNION, ZINTER, ZDIFF, their
//! STORE forms (WEIGHTS, AGGREGATE SUM|MIN|MAX, WITHSCORES) and ZINTERCARD.
//! Plain sets count as sorted sets whose members all score 1, as in Redis.

use super::command::{Cmd, Ctx, Spec, ERR_NOT_INT, ERR_SYNTAX, WRONGTYPE};
use super::frame::{parse_i64, reply, Argv};
use super::value::{fmt_double, parse_double, Value, ZSet};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Min,
    Max,
}

/// Runs one of this file's commands; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let (op, store, card) = match spec.cmd {
        Cmd::ZUnion => (Op::Union, false, false),
        Cmd::ZInter => (Op::Inter, false, false),
        Cmd::ZDiff => (Op::Diff, false, false),
        Cmd::ZUnionStore => (Op::Union, true, false),
        Cmd::ZInterStore => (Op::Inter, true, false),
        Cmd::ZDiffStore => (Op::Diff, true, false),
        Cmd::ZInterCard => (Op::Inter, false, true),
        _ => return false,
    };
    run(c, spec, a, op, store, card);
    true
}

/// A source's members and scores (missing key: empty); None after WRONGTYPE.
fn source(c: &mut Ctx, k: &[u8]) -> Option<Vec<(Vec<u8>, f64)>> {
    match c.live(k).map(|e| &e.val) {
        None => Some(Vec::new()),
        Some(Value::ZSet(z)) => Some(z.tree.iter().map(|(s, m)| (m.clone(), s.0)).collect()),
        Some(Value::Set(s)) => Some(s.iter().map(|m| (m.clone(), 1.0)).collect()),
        Some(_) => {
            c.err(WRONGTYPE);
            None
        }
    }
}

fn run(c: &mut Ctx, spec: &Spec, a: Argv, op: Op, store: bool, card: bool) {
    let at = if store { 2 } else { 1 };
    let Some(n) = parse_i64(a.get(at)) else {
        return c.err(ERR_NOT_INT);
    };
    if n < 1 {
        return c.err(&format!(
            "ERR at least 1 input key is needed for '{}' command",
            spec.name
        ));
    }
    if n as u64 > (a.len() - at - 1) as u64 {
        return c.err(ERR_SYNTAX);
    }
    let n = n as usize;
    let mut srcs = Vec::with_capacity(n);
    for i in 0..n {
        match source(c, a.get(at + 1 + i)) {
            Some(s) => srcs.push(s),
            None => return,
        }
    }
    let mut weights = vec![1.0f64; n];
    let (mut agg, mut withscores, mut limit) = (Agg::Sum, false, 0usize);
    let mut j = at + 1 + n;
    while j < a.len() {
        let o = a.get(j);
        let left = a.len() - j;
        let is = |s: &[u8]| o.eq_ignore_ascii_case(s);
        if op != Op::Diff && !card && left > n && is(b"WEIGHTS") {
            for (i, w) in weights.iter_mut().enumerate() {
                match parse_double(a.get(j + 1 + i)) {
                    Some(v) => *w = v,
                    None => return c.err("ERR weight value is not a float"),
                }
            }
            j += 1 + n;
        } else if op != Op::Diff && !card && left >= 2 && is(b"AGGREGATE") {
            let v = a.get(j + 1);
            agg = if v.eq_ignore_ascii_case(b"SUM") {
                Agg::Sum
            } else if v.eq_ignore_ascii_case(b"MIN") {
                Agg::Min
            } else if v.eq_ignore_ascii_case(b"MAX") {
                Agg::Max
            } else {
                return c.err(ERR_SYNTAX);
            };
            j += 2;
        } else if !store && !card && is(b"WITHSCORES") {
            withscores = true;
            j += 1;
        } else if card && left >= 2 && is(b"LIMIT") {
            match parse_i64(a.get(j + 1)) {
                Some(l) if l >= 0 => limit = l as usize,
                _ => return c.err("ERR LIMIT can't be negative"),
            }
            j += 2;
        } else {
            return c.err(ERR_SYNTAX);
        }
    }
    let result = combine(&srcs, &weights, op, agg);
    if card {
        let k = if limit > 0 {
            result.len().min(limit)
        } else {
            result.len()
        };
        return reply::int(c.out, k as i64);
    }
    if !store {
        let items: Vec<(&[u8], f64)> = result
            .tree
            .iter()
            .map(|(s, m)| (m.as_slice(), s.0))
            .collect();
        let nested = withscores && reply::resp3();
        reply::array(
            c.out,
            items.len() * if withscores && !nested { 2 } else { 1 },
        );
        for (m, s) in items {
            if nested {
                reply::array(c.out, 2);
            }
            reply::bulk(c.out, m);
            if withscores {
                reply::double(c.out, &fmt_double(s));
            }
        }
        return;
    }
    let dst = a.get(1);
    if !c.key_ok(dst) {
        return;
    }
    let len = result.len();
    let existed = c.exists(dst);
    if len == 0 {
        c.st.db.remove(dst);
        if existed && !c.from_master {
            c.st.propagate(&[b"DEL", dst]);
        }
    } else {
        c.st.db.insert(dst, Value::ZSet(result), 0);
        super::typed::propagate_argv(c, a);
    }
    c.st.db.touch(dst);
    reply::int(c.out, len as i64);
}

/// Redis's weighted score: inf x 0 is 0, not NaN.
fn weighted(s: f64, w: f64) -> f64 {
    let v = s * w;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

fn aggregate(acc: f64, v: f64, agg: Agg) -> f64 {
    match agg {
        Agg::Sum => {
            let t = acc + v;
            if t.is_nan() {
                0.0
            } else {
                t
            }
        }
        Agg::Min => acc.min(v),
        Agg::Max => acc.max(v),
    }
}

fn combine(srcs: &[Vec<(Vec<u8>, f64)>], weights: &[f64], op: Op, agg: Agg) -> ZSet {
    let mut out = ZSet::default();
    match op {
        Op::Union => {
            let mut acc: std::collections::HashMap<&[u8], f64> = std::collections::HashMap::new();
            for (src, w) in srcs.iter().zip(weights) {
                for (m, s) in src {
                    let v = weighted(*s, *w);
                    acc.entry(m.as_slice())
                        .and_modify(|a| *a = aggregate(*a, v, agg))
                        .or_insert(v);
                }
            }
            for (m, s) in acc {
                out.insert(m, s);
            }
        }
        Op::Inter => {
            let maps: Vec<std::collections::HashMap<&[u8], f64>> = srcs
                .iter()
                .map(|s| s.iter().map(|(m, x)| (m.as_slice(), *x)).collect())
                .collect();
            let Some(first) = srcs.first() else {
                return out;
            };
            'member: for (m, s) in first {
                let mut v = weighted(*s, weights[0]);
                for (i, map) in maps.iter().enumerate().skip(1) {
                    match map.get(m.as_slice()) {
                        Some(x) => v = aggregate(v, weighted(*x, weights[i]), agg),
                        None => continue 'member,
                    }
                }
                out.insert(m, v);
            }
        }
        Op::Diff => {
            let Some((first, rest)) = srcs.split_first() else {
                return out;
            };
            let others: std::collections::HashSet<&[u8]> = rest
                .iter()
                .flat_map(|s| s.iter().map(|(m, _)| m.as_slice()))
                .collect();
            for (m, s) in first {
                if !others.contains(m.as_slice()) {
                    out.insert(m, *s);
                }
            }
        }
    }
    out
}
