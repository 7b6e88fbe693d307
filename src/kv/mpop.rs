//! Multi-key pops, as Redis 7.0 answers them: LMPOP, ZMPOP and their blocking
//! forms BLMPOP, BZMPOP ([key, elements] from the first non-empty key).
//! Replicated as LPOP/RPOP/ZPOPMIN/ZPOPMAX key count, as Redis does.

use super::blocking::{non_empty, nothing, run, timeout_ms};
use super::command::{Cmd, Ctx, Spec, ERR_SYNTAX};
use super::frame::{fmt_i64, parse_i64, reply, Argv};
use super::typed::Kind;
use super::value::fmt_double;

/// Runs one of this file's commands; false if `spec` is not one.
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) -> bool {
    let (zset, block) = match spec.cmd {
        Cmd::LMPop => (false, false),
        Cmd::BLMPop => (false, true),
        Cmd::ZMPop => (true, false),
        Cmd::BZMPop => (true, true),
        _ => return false,
    };
    let mut ms = 0;
    if block {
        match timeout_ms(c, a.get(1)) {
            Some(t) => ms = t,
            None => return true,
        }
    }
    let at = if block { 2 } else { 1 };
    let numkeys = match parse_i64(a.get(at)) {
        Some(n) if n >= 1 => n as u64,
        _ => {
            c.err("ERR numkeys should be greater than 0");
            return true;
        }
    };
    let where_idx = at as u64 + numkeys + 1;
    if where_idx >= a.len() as u64 {
        c.err(ERR_SYNTAX);
        return true;
    }
    let where_idx = where_idx as usize;
    let w = a.get(where_idx);
    let (first, second): (&[u8], &[u8]) = if zset {
        (b"MIN", b"MAX")
    } else {
        (b"LEFT", b"RIGHT")
    };
    let from_end = if w.eq_ignore_ascii_case(first) {
        false
    } else if w.eq_ignore_ascii_case(second) {
        true
    } else {
        c.err(ERR_SYNTAX);
        return true;
    };
    let mut count: Option<usize> = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && a.get(j).eq_ignore_ascii_case(b"COUNT") && j + 1 < a.len() {
            match parse_i64(a.get(j + 1)) {
                Some(n) if n >= 1 => count = Some(n as usize),
                _ => {
                    c.err("ERR count should be greater than 0");
                    return true;
                }
            }
            j += 2;
        } else {
            c.err(ERR_SYNTAX);
            return true;
        }
    }
    let count = count.unwrap_or(1);
    let kind = if zset { Kind::ZSet } else { Kind::List };
    for i in 0..numkeys as usize {
        let k = a.get(at + 1 + i);
        match non_empty(c, k, kind) {
            Err(_) => return true,
            Ok(false) => continue,
            Ok(true) => {}
        }
        reply::array(c.out, 2);
        reply::bulk(c.out, k);
        // Replicated with the count actually popped, as Redis does.
        let len = c.st.db.peek(k).map_or(0, |e| e.val.len());
        let mut b = [0u8; 20];
        let n = fmt_i64(count.min(len) as i64, &mut b).to_vec();
        if zset {
            let popped = super::zset::pop_n(c, k, count, from_end);
            let name: &[u8] = if from_end { b"ZPOPMAX" } else { b"ZPOPMIN" };
            c.propagate(&[name, k, &n]);
            reply::array(c.out, popped.len());
            for (m, s) in &popped {
                reply::array(c.out, 2);
                reply::bulk(c.out, m);
                reply::double(c.out, &fmt_double(*s));
            }
        } else {
            let name: &[u8] = if from_end { b"RPOP" } else { b"LPOP" };
            run(c, name, &[name, k, &n]);
        }
        return true;
    }
    if block {
        nothing(c, ms);
    } else {
        reply::nil_array(c.out);
    }
    true
}
