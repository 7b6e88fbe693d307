//! DEBUG, the subcommands Redis's own test suite relies on: RELOAD (the
//! keyspace through an RDB encode and decode), SET-ACTIVE-EXPIRE, OBJECT,
//! QUICKLIST-PACKED-THRESHOLD (accepted: kv's lists have no packed nodes).

use std::sync::atomic::Ordering;

use super::command::{Ctx, ERR_SYNTAX};
use super::frame::{parse_i64, reply, Argv};

/// Runs DEBUG (with the state lock held).
pub fn debug(c: &mut Ctx, a: Argv) {
    let sub = a.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"RELOAD") {
        // Round-trips every key through the RDB code, as Redis's save-and-load does.
        let snap = c.st.to_rdb(c.now, &super::rdb::Aux::default());
        match super::replication::decode_rdb(c.kv, &snap) {
            Ok(dbs) => {
                c.st.replace_all(dbs);
                reply::ok(c.out);
            }
            Err(e) => c.err(&format!("ERR Error trying to load the RDB dump: {e}")),
        }
    } else if is(b"SET-ACTIVE-EXPIRE") && a.len() == 3 {
        match parse_i64(a.get(2)) {
            Some(n) => {
                c.kv.settings.active_expire.store(n != 0, Ordering::Relaxed);
                reply::ok(c.out);
            }
            None => c.err(super::command::ERR_NOT_INT),
        }
    } else if is(b"QUICKLIST-PACKED-THRESHOLD") && a.len() == 3 {
        reply::ok(c.out);
    } else if is(b"OBJECT") && a.len() == 3 {
        let kv = c.kv;
        let Some((enc, len)) = c
            .live(a.get(2))
            .map(|e| (e.val.encoding(&kv.settings), e.val.mem()))
        else {
            return c.err("ERR no such key");
        };
        let line = format!(
            "Value at:0x0 refcount:1 encoding:{enc} serializedlength:{len} lru:0 lru_seconds_idle:0"
        );
        reply::simple(c.out, &line);
    } else if a.len() < 2 {
        c.err(ERR_SYNTAX);
    } else {
        c.err(&format!(
            "ERR unknown subcommand '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        ));
    }
}
