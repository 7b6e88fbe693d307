//! DEBUG, the subcommands Redis's own test suite relies on: RELOAD (the
//! keyspace through an RDB encode and decode), SET-ACTIVE-EXPIRE, OBJECT,
//! QUICKLIST-PACKED-THRESHOLD (accepted: kv's lists have no packed nodes).

use std::sync::atomic::Ordering;

use super::command::{Ctx, ERR_SYNTAX};
use super::frame::{parse_i64, reply, Argv};
use super::value::Value;

/// 20 bytes summarising a key's value (and key and expiry when given), the
/// same for equal values whatever their insertion history.
fn digest_bytes(key: &[u8], v: &Value, exp: u64) -> [u8; 20] {
    use std::hash::{Hash, Hasher};
    let mut parts: Vec<Vec<u8>> = Vec::new();
    match v {
        Value::Str(s) => parts.push(s.clone()),
        Value::List(l) => parts.extend(l.iter().cloned()),
        Value::Hash(h) => {
            let mut kv: Vec<Vec<u8>> = h.iter().map(|(f, x)| [&f[..], b"\0", x].concat()).collect();
            kv.sort();
            parts = kv;
        }
        Value::Set(s) => {
            parts = s.iter().cloned().collect();
            parts.sort();
        }
        Value::ZSet(z) => {
            parts = z
                .tree
                .iter()
                .map(|(s, m)| [&m[..], &s.0.to_le_bytes()[..]].concat())
                .collect()
        }
    }
    let mut out = [0u8; 20];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i as u64, v.type_name(), key, exp, &parts).hash(&mut h);
        let x = h.finish().to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
    out
}

/// DEBUG DIGEST-VALUE's 40 hex characters for one value.
fn digest(v: &Value) -> String {
    digest_bytes(b"", v, 0)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
    } else if is(b"DIGEST-VALUE") {
        reply::array(c.out, a.len() - 2);
        for k in a.iter().skip(2) {
            let d = c.live(k).map(|e| digest(&e.val));
            reply::simple(c.out, d.as_deref().unwrap_or(&"0".repeat(40)));
        }
    } else if is(b"DIGEST") && a.len() == 2 {
        // Order-independent over keys, like Redis's XOR of per-key digests.
        let now = c.now;
        let mut acc = [0u8; 20];
        let mut any = false;
        for (k, e) in c.st.db.entries() {
            if e.expired(now) {
                continue;
            }
            any = true;
            let d = digest_bytes(k, &e.val, e.exp);
            for (a, b) in acc.iter_mut().zip(d) {
                *a ^= b;
            }
        }
        let hex: String = acc.iter().map(|b| format!("{b:02x}")).collect();
        reply::simple(
            c.out,
            if any {
                &hex
            } else {
                "0000000000000000000000000000000000000000"
            },
        );
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
