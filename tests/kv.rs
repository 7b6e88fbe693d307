//! kv end to end: every command and its Redis 7 errors, expiry, auth, limits, malformed input, replication, WAIT, resync, promotion.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Lb;

// ---------------------------------------------------------------- helpers

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum R {
    S(String),
    E(String),
    I(i64),
    B(Option<String>),
    A(Option<Vec<R>>),
}

fn b(s: &str) -> R {
    R::B(Some(s.to_string()))
}

const NIL: R = R::B(None);

fn ok() -> R {
    R::S("OK".into())
}

fn e(s: &str) -> R {
    R::E(s.to_string())
}

/// A raw RESP connection, for exact bytes.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn new(addr: SocketAddr) -> Raw {
        let s = common::connect(addr);
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn cmd(&mut self, args: &[&str]) -> R {
        self.send(&encode(args));
        self.read()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "unterminated line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn read(&mut self) -> R {
        let l = self.line();
        let (t, rest) = l.split_at(1);
        match t {
            "+" => R::S(rest.into()),
            "-" => R::E(rest.into()),
            ":" => R::I(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return NIL;
                }
                let mut v = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut v).unwrap();
                v.truncate(n as usize);
                R::B(Some(String::from_utf8_lossy(&v).into_owned()))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return R::A(None);
                }
                R::A(Some((0..n).map(|_| self.read()).collect()))
            }
            _ => panic!("bad reply line {l:?}"),
        }
    }

    /// Reads until the server closes; returns what came.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        v
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

fn kv_conf(name: &str, extra: &str) -> String {
    format!("kv {name}\n    bind 127.0.0.1:0\n{extra}")
}

fn start(extra: &str) -> (Lb, SocketAddr) {
    let lb = Lb::start(&kv_conf("primary", extra), 1);
    let a = lb.addr("kv", "primary");
    (lb, a)
}

fn start_replica(primary: SocketAddr, extra: &str) -> (Lb, SocketAddr) {
    let lb = Lb::start(
        &kv_conf("replica", &format!("    replicaof {primary}\n{extra}")),
        1,
    );
    let a = lb.addr("kv", "replica");
    (lb, a)
}

fn client(addr: SocketAddr) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let con = c.get_connection_with_timeout(common::WAIT).unwrap();
    con.set_read_timeout(Some(common::WAIT)).unwrap();
    con.set_write_timeout(Some(common::WAIT)).unwrap();
    con
}

fn info_field(raw: &mut Raw, section: &str, field: &str) -> String {
    let R::B(Some(text)) = raw.cmd(&["INFO", section]) else {
        panic!("INFO did not return a bulk");
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{text}"))
        .to_string()
}

// ---------------------------------------------------------------- commands

#[test]
fn connection_commands() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["PING"]), R::S("PONG".into()));
    assert_eq!(r.cmd(&["ping", "hi"]), b("hi"));
    assert_eq!(
        r.cmd(&["PING", "a", "b"]),
        e("ERR wrong number of arguments for 'ping' command")
    );
    assert_eq!(r.cmd(&["ECHO", "x y"]), b("x y"));
    assert_eq!(r.cmd(&["SELECT", "0"]), ok());
    assert_eq!(r.cmd(&["SELECT", "16"]), e("ERR DB index is out of range"));
    assert_eq!(r.cmd(&["SELECT", "1"]), ok());
    assert_eq!(r.cmd(&["SELECT", "0"]), ok());
    assert_eq!(
        r.cmd(&["SELECT", "x"]),
        e("ERR value is not an integer or out of range")
    );
    assert_eq!(
        r.cmd(&["HELLO", "4"]),
        e("NOPROTO unsupported protocol version")
    );
    assert_eq!(r.cmd(&["CLIENT", "GETNAME"]), NIL);
    assert_eq!(r.cmd(&["CLIENT", "SETNAME", "app1"]), ok());
    assert_eq!(r.cmd(&["CLIENT", "GETNAME"]), b("app1"));
    assert_eq!(
        r.cmd(&["CLIENT", "SETNAME", "a b"]),
        e("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(
        r.cmd(&["CLIENT", "NOPE"]),
        e("ERR unknown subcommand 'NOPE'. Try CLIENT HELP.")
    );
    assert_eq!(
        r.cmd(&["AUTH", "x"]),
        e("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
    );
    let R::I(n) = r.cmd(&["COMMAND", "COUNT"]) else {
        panic!()
    };
    assert!(n > 40);
    let R::A(Some(info)) = r.cmd(&["COMMAND", "INFO", "get", "nope"]) else {
        panic!()
    };
    assert_eq!(info[1], R::A(None));
    let R::A(Some(get)) = &info[0] else { panic!() };
    assert_eq!(get[0], b("get"));
    assert_eq!(get[1], R::I(2));
    let R::A(Some(all)) = r.cmd(&["COMMAND"]) else {
        panic!()
    };
    assert_eq!(all.len() as i64, n);
    assert_eq!(r.cmd(&["COMMAND", "DOCS"]), R::A(Some(vec![])));
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "save"]),
        R::A(Some(vec![b("save"), b("")]))
    );
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "appendonly"]),
        R::A(Some(vec![b("appendonly"), b("no")]))
    );
    assert_eq!(
        r.cmd(&["CONFIG", "GET"]),
        e("ERR wrong number of arguments for 'config|get' command")
    );
    assert_eq!(
        r.cmd(&["FOO", "a", "b"]),
        e("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(r.cmd(&["QUIT"]), ok());
    assert!(r.rest().is_empty(), "connection stays open after QUIT");
}

#[test]
fn string_commands_with_the_redis_crate() {
    use redis::Commands;
    let (_lb, a) = start("");
    let mut c = client(a);
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(
        c.get::<_, Option<String>>("k").unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(c.get::<_, Option<String>>("missing").unwrap(), None);
    assert!(!c.set_nx::<_, _, bool>("k", "w").unwrap());
    assert!(c.set_nx::<_, _, bool>("k2", "w").unwrap());
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).unwrap();
    let got: Vec<Option<String>> = c.mget(&["a", "nope", "b"]).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(c.exists::<_, i64>(&["a", "b", "a", "zz"]).unwrap(), 3);
    assert_eq!(c.del::<_, i64>(&["a", "zz"]).unwrap(), 1);
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    assert_eq!(c.decr::<_, _, i64>("n", 7).unwrap(), -2);
    let n: i64 = redis::cmd("INCR").arg("n").query(&mut c).unwrap();
    assert_eq!(n, -1);
    let n: i64 = redis::cmd("DECR").arg("n").query(&mut c).unwrap();
    assert_eq!(n, -2);
    assert_eq!(c.append::<_, _, i64>("s", "ab").unwrap(), 2);
    assert_eq!(c.append::<_, _, i64>("s", "cd").unwrap(), 4);
    assert_eq!(c.strlen::<_, i64>("s").unwrap(), 4);
    assert_eq!(c.strlen::<_, i64>("nope").unwrap(), 0);
    assert_eq!(
        c.get_del::<_, Option<String>>("s").unwrap().as_deref(),
        Some("abcd")
    );
    assert_eq!(c.get_del::<_, Option<String>>("s").unwrap(), None);
    let _: () = c.set_ex("t", "v", 100).unwrap();
    let ttl: i64 = c.ttl("t").unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    let t: String = redis::cmd("TYPE").arg("t").query(&mut c).unwrap();
    assert_eq!(t, "string");
    let t: String = redis::cmd("TYPE").arg("nope").query(&mut c).unwrap();
    assert_eq!(t, "none");
    let mut keys: Vec<String> = c.keys("*").unwrap();
    keys.sort();
    assert_eq!(keys, ["b", "k", "k2", "n", "t"]);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 5);
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let _: () = c.set("x", "1").unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert!(!c.exists::<_, bool>("x").unwrap());
}

#[test]
fn set_options_and_errors() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["SET", "k", "1", "NX"]), ok());
    assert_eq!(r.cmd(&["SET", "k", "2", "NX"]), NIL);
    assert_eq!(r.cmd(&["SET", "k", "2", "XX"]), ok());
    assert_eq!(r.cmd(&["SET", "new", "2", "XX"]), NIL);
    assert_eq!(r.cmd(&["SET", "k", "3", "GET"]), b("2"));
    assert_eq!(r.cmd(&["SET", "fresh", "3", "GET"]), NIL);
    assert_eq!(r.cmd(&["SET", "k", "4", "NX", "GET"]), b("3"));
    assert_eq!(r.cmd(&["GET", "k"]), b("3"));
    assert_eq!(r.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert!(matches!(r.cmd(&["PTTL", "k"]), R::I(ms) if ms > 99_000 && ms <= 100_000));
    assert_eq!(r.cmd(&["SET", "k", "w", "KEEPTTL"]), ok());
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(99..=100)));
    assert_eq!(r.cmd(&["SET", "k", "w"]), ok());
    assert_eq!(r.cmd(&["TTL", "k"]), R::I(-1));
    assert_eq!(r.cmd(&["SET", "k", "v", "PX", "100000"]), ok());
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(99..=100)));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = (now_s + 200).to_string();
    assert_eq!(r.cmd(&["SET", "k", "v", "EXAT", &at]), ok());
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(198..=200)));
    let pat = ((now_s + 300) * 1000).to_string();
    assert_eq!(r.cmd(&["SET", "k", "v", "PXAT", &pat]), ok());
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(298..=300)));
    // An absolute time in the past deletes the key.
    assert_eq!(r.cmd(&["SET", "k", "v", "PXAT", "1"]), ok());
    assert_eq!(r.cmd(&["EXISTS", "k"]), R::I(0));

    let syntax = e("ERR syntax error");
    assert_eq!(r.cmd(&["SET", "k", "v", "NX", "XX"]), syntax);
    assert_eq!(r.cmd(&["SET", "k", "v", "EX", "10", "PX", "10"]), syntax);
    assert_eq!(r.cmd(&["SET", "k", "v", "EX", "10", "KEEPTTL"]), syntax);
    assert_eq!(r.cmd(&["SET", "k", "v", "EX"]), syntax);
    assert_eq!(r.cmd(&["SET", "k", "v", "BOGUS"]), syntax);
    assert_eq!(
        r.cmd(&["SET", "k", "v", "EX", "ten"]),
        e("ERR value is not an integer or out of range")
    );
    for bad in ["0", "-5", "9223372036854775807"] {
        assert_eq!(
            r.cmd(&["SET", "k", "v", "EX", bad]),
            e("ERR invalid expire time in 'set' command"),
            "EX {bad}"
        );
    }
    assert_eq!(
        r.cmd(&["SET", "k"]),
        e("ERR wrong number of arguments for 'set' command")
    );
    assert_eq!(r.cmd(&["SETEX", "k", "10", "v"]), ok());
    assert_eq!(
        r.cmd(&["SETEX", "k", "0", "v"]),
        e("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(
        r.cmd(&["SETEX", "k", "x", "v"]),
        e("ERR value is not an integer or out of range")
    );
    assert_eq!(r.cmd(&["SETNX", "k", "v"]), R::I(0));
    assert_eq!(
        r.cmd(&["MSET", "a", "1", "b"]),
        e("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(r.cmd(&["GETSET", "g", "1"]), NIL);
    assert_eq!(r.cmd(&["GETSET", "g", "2"]), b("1"));
}

#[test]
fn integer_errors_and_overflow() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    let not_int = e("ERR value is not an integer or out of range");
    assert_eq!(r.cmd(&["SET", "s", "abc"]), ok());
    assert_eq!(r.cmd(&["INCR", "s"]), not_int);
    assert_eq!(r.cmd(&["SET", "s", " 1"]), ok());
    assert_eq!(r.cmd(&["INCR", "s"]), not_int);
    assert_eq!(r.cmd(&["INCRBY", "n", "1.5"]), not_int);
    assert_eq!(r.cmd(&["INCRBY", "n", "99999999999999999999"]), not_int);
    assert_eq!(r.cmd(&["SET", "n", "9223372036854775806"]), ok());
    assert_eq!(r.cmd(&["INCR", "n"]), R::I(i64::MAX));
    assert_eq!(
        r.cmd(&["INCR", "n"]),
        e("ERR increment or decrement would overflow")
    );
    assert_eq!(r.cmd(&["SET", "m", "-9223372036854775808"]), ok());
    assert_eq!(
        r.cmd(&["DECR", "m"]),
        e("ERR increment or decrement would overflow")
    );
    assert_eq!(
        r.cmd(&["DECRBY", "z", "-9223372036854775808"]),
        e("ERR decrement would overflow")
    );
    assert_eq!(r.cmd(&["DECRBY", "z", "-5"]), R::I(5));
    assert_eq!(r.cmd(&["INCRBY", "z", "-10"]), R::I(-5));
    // The TTL survives INCR.
    assert_eq!(r.cmd(&["SET", "t", "1", "EX", "100"]), ok());
    assert_eq!(r.cmd(&["INCR", "t"]), R::I(2));
    assert!(matches!(r.cmd(&["TTL", "t"]), R::I(99..=100)));
    assert_eq!(
        r.cmd(&["INCR"]),
        e("ERR wrong number of arguments for 'incr' command")
    );
    assert_eq!(
        r.cmd(&["GET", "a", "b"]),
        e("ERR wrong number of arguments for 'get' command")
    );
}

#[test]
fn expire_family() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["EXPIRE", "nope", "10"]), R::I(0));
    assert_eq!(r.cmd(&["TTL", "nope"]), R::I(-2));
    assert_eq!(r.cmd(&["PTTL", "nope"]), R::I(-2));
    assert_eq!(r.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(r.cmd(&["TTL", "k"]), R::I(-1));
    assert_eq!(r.cmd(&["EXPIRE", "k", "100", "XX"]), R::I(0));
    assert_eq!(r.cmd(&["EXPIRE", "k", "100", "NX"]), R::I(1));
    assert_eq!(r.cmd(&["EXPIRE", "k", "200", "NX"]), R::I(0));
    assert_eq!(r.cmd(&["EXPIRE", "k", "50", "GT"]), R::I(0));
    assert_eq!(r.cmd(&["EXPIRE", "k", "150", "GT"]), R::I(1));
    assert_eq!(r.cmd(&["EXPIRE", "k", "160", "LT"]), R::I(0));
    assert_eq!(r.cmd(&["PEXPIRE", "k", "120000", "LT"]), R::I(1));
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(119..=120)));
    assert_eq!(r.cmd(&["PERSIST", "k"]), R::I(1));
    assert_eq!(r.cmd(&["PERSIST", "k"]), R::I(0));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        r.cmd(&["EXPIREAT", "k", &(now_s + 50).to_string()]),
        R::I(1)
    );
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(48..=50)));
    assert_eq!(
        r.cmd(&["PEXPIREAT", "k", &((now_s + 60) * 1000).to_string()]),
        R::I(1)
    );
    assert!(matches!(r.cmd(&["TTL", "k"]), R::I(58..=60)));
    assert_eq!(
        r.cmd(&["EXPIRE", "k", "10", "NX", "XX"]),
        e("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(
        r.cmd(&["EXPIRE", "k", "10", "GT", "LT"]),
        e("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        r.cmd(&["EXPIRE", "k", "10", "FOO"]),
        e("ERR Unsupported option FOO")
    );
    assert_eq!(
        r.cmd(&["EXPIRE", "k", "ten"]),
        e("ERR value is not an integer or out of range")
    );
    assert_eq!(
        r.cmd(&["EXPIRE", "k", "9223372036854775807"]),
        e("ERR invalid expire time in 'expire' command")
    );
    // A time in the past deletes at once.
    assert_eq!(r.cmd(&["EXPIRE", "k", "-1"]), R::I(1));
    assert_eq!(r.cmd(&["GET", "k"]), NIL);
}

#[test]
fn keys_expire_lazily_and_actively() {
    let (_lb, a) = start("    hz 50\n");
    let mut r = Raw::new(a);
    // Lazy: reading an expired key returns nil.
    assert_eq!(r.cmd(&["SET", "lazy", "v", "PX", "30"]), ok());
    common::eventually("lazy expiry", || {
        (r.cmd(&["GET", "lazy"]) == NIL).then_some(())
    });
    // Active: keys nobody reads disappear from DBSIZE (which counts expired keys too).
    for i in 0..500 {
        assert_eq!(r.cmd(&["SET", &format!("k{i}"), "v", "PX", "30"]), ok());
    }
    assert_eq!(r.cmd(&["SET", "stay", "v"]), ok());
    common::eventually("active expiry", || {
        (r.cmd(&["DBSIZE"]) == R::I(1)).then_some(())
    });
    let expired: u64 = info_field(&mut r, "stats", "expired_keys").parse().unwrap();
    assert!(expired >= 501, "{expired}");
    assert_eq!(r.cmd(&["GET", "stay"]), b("v"));
}

#[test]
fn scan_and_keys_patterns() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    for i in 0..100 {
        assert_eq!(r.cmd(&["SET", &format!("user:{i}"), "v"]), ok());
        assert_eq!(r.cmd(&["SET", &format!("other:{i}"), "v"]), ok());
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let R::A(Some(page)) = r.cmd(&["SCAN", &cursor, "MATCH", "user:*", "COUNT", "17"]) else {
            panic!()
        };
        let R::B(Some(next)) = &page[0] else { panic!() };
        let R::A(Some(keys)) = &page[1] else { panic!() };
        for k in keys {
            let R::B(Some(k)) = k else { panic!() };
            assert!(k.starts_with("user:"));
            seen.insert(k.clone());
        }
        cursor = next.clone();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 100);
    let R::A(Some(keys)) = r.cmd(&["KEYS", "user:[1-2]?"]) else {
        panic!()
    };
    assert_eq!(keys.len(), 20);
    assert_eq!(r.cmd(&["SCAN", "x"]), e("ERR invalid cursor"));
    assert_eq!(r.cmd(&["SCAN", "0", "COUNT", "0"]), e("ERR syntax error"));
    assert_eq!(r.cmd(&["SCAN", "0", "MATCH"]), e("ERR syntax error"));
    let R::A(Some(page)) = r.cmd(&["SCAN", "0", "TYPE", "list"]) else {
        panic!()
    };
    assert_eq!(page[1], R::A(Some(vec![])));
}

#[test]
fn requirepass_gates_commands() {
    let (_lb, a) = start("    requirepass sesame\n");
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["GET", "k"]), e("NOAUTH Authentication required."));
    assert_eq!(
        r.cmd(&["AUTH", "wrong"]),
        e("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        r.cmd(&["AUTH", "bob", "sesame"]),
        e("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(r.cmd(&["AUTH", "default", "sesame"]), ok());
    assert_eq!(r.cmd(&["SET", "k", "v"]), ok());
    // The redis crate authenticates from the URL.
    let c = redis::Client::open(format!("redis://:sesame@{a}/")).unwrap();
    let mut con = c.get_connection_with_timeout(common::WAIT).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    // Before AUTH, Redis's small request limits apply.
    let mut r2 = Raw::new(a);
    r2.send(b"*20\r\n");
    assert_eq!(r2.read(), e("ERR Protocol error: invalid multibulk length"));
}

#[test]
fn limits_on_memory_keys_and_values() {
    let (_lb, a) = start("    maxmemory 2k\n    max-key-bytes 10\n    max-value-bytes 100\n");
    let mut r = Raw::new(a);
    assert_eq!(
        r.cmd(&["SET", "a-very-long-key", "v"]),
        e("ERR key exceeds maximum allowed size (max-key-bytes)")
    );
    let v = "x".repeat(100);
    assert_eq!(r.cmd(&["SET", "a", &v]), ok());
    assert_eq!(
        r.cmd(&["APPEND", "a", "y"]),
        e("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    let mut i = 0;
    let oom = loop {
        let got = r.cmd(&["SET", &format!("k{i}"), &v]);
        if got != ok() {
            break got;
        }
        i += 1;
        assert!(i < 100, "maxmemory never refused");
    };
    assert_eq!(
        oom,
        e("OOM command not allowed when used memory > 'maxmemory'.")
    );
    // Reads and deletes still work when full.
    assert_eq!(r.cmd(&["GET", "a"]), b(&v));
    assert_eq!(r.cmd(&["DEL", "a"]), R::I(1));
    let used: u64 = info_field(&mut r, "memory", "used_memory").parse().unwrap();
    assert!(used <= 2048, "{used}");
    // A value longer than max-value-bytes is a protocol error.
    let big = "z".repeat(101);
    r.send(&encode(&["SET", "b", &big]));
    assert_eq!(r.read(), e("ERR Protocol error: invalid bulk length"));
    assert!(r.rest().is_empty());
}

// ---------------------------------------------------------------- framing

#[test]
fn malformed_frames_get_protocol_errors_and_close() {
    let (_lb, a) = start("    max-inline-bytes 1k\n    max-array-len 100\n");
    let cases: &[(&[u8], &str)] = &[
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*101\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$x\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$999999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n:1\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGxx\r\n",
            "-ERR Protocol error: expected CRLF after bulk data\r\n",
        ),
        (
            b"SET \"a b\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (req, want) in cases {
        let got = common::roundtrip(a, req);
        assert_eq!(
            String::from_utf8_lossy(&got),
            *want,
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    // Too-long inline line / count header without a newline: refused, not buffered.
    let got = common::roundtrip(a, &vec![b'a'; 2000]);
    assert_eq!(got, b"-ERR Protocol error: too big inline request\r\n");
    let mut long = b"*".to_vec();
    long.extend(vec![b'1'; 2000]);
    let got = common::roundtrip(a, &long);
    assert_eq!(got, b"-ERR Protocol error: too big mbulk count string\r\n");
    // Valid replies before the bad frame still arrive, in order.
    let got = common::roundtrip(a, b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n");
    assert_eq!(
        got,
        b"+PONG\r\n+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    );
    // Inline commands and empty requests work.
    let got = common::roundtrip(a, b"\r\n*0\r\nSET k 'a b'\r\nGET k\n");
    assert_eq!(got, b"+OK\r\n$3\r\na b\r\n");
}

#[test]
fn random_garbage_never_kills_the_server() {
    let (_lb, a) = start("");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"*$\r\n0123456789-+:abcSETGET \"'";
    for _ in 0..200 {
        let len = (next() % 64) as usize;
        let req: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = common::roundtrip(a, &req);
    }
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["PING"]), R::S("PONG".into()));
}

#[test]
fn pipelined_requests_get_ordered_replies() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    let mut req = Vec::new();
    for i in 0..2000 {
        req.extend(encode(&["SET", &format!("k{i}"), &i.to_string()]));
        req.extend(encode(&["INCR", &format!("k{i}")]));
    }
    // Cut at an odd place to exercise partial frames.
    let (x, y) = req.split_at(req.len() / 3 + 7);
    r.send(x);
    r.send(y);
    for i in 0..2000 {
        assert_eq!(r.read(), ok());
        assert_eq!(r.read(), R::I(i + 1));
    }
}

#[test]
fn a_stuck_client_does_not_block_others() {
    let (_lb, a) = start("");
    let mut r = Raw::new(a);
    let big = "v".repeat(1 << 20);
    assert_eq!(r.cmd(&["SET", "big", &big]), ok());
    // This client asks for ~200 MB of replies and never reads them.
    let mut stuck = common::connect(a);
    let mut req = Vec::new();
    for _ in 0..200 {
        req.extend(encode(&["GET", "big"]));
    }
    stuck.write_all(&req).unwrap();
    let mut c = Raw::new(a);
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", "x", &i.to_string()]), ok());
        assert_eq!(c.cmd(&["GET", "x"]), b(&i.to_string()));
    }
    drop(stuck);
}

// ---------------------------------------------------------------- replication

#[test]
fn replica_gets_snapshot_then_stream_and_wait_counts_it() {
    use redis::Commands;
    let (_p, pa) = start("");
    let mut pc = client(pa);
    let _: () = pc.set("before", "1").unwrap();
    let _: () = pc.set_ex("ttl", "1", 500).unwrap();
    let (_r, ra) = start_replica(pa, "");
    let mut rc = client(ra);
    common::eventually("snapshot on replica", || {
        rc.get::<_, Option<String>>("before").unwrap()
    });
    let ttl: i64 = rc.ttl("ttl").unwrap();
    assert!((490..=500).contains(&ttl), "{ttl}");
    for i in 0..100 {
        let _: () = pc.set(format!("k{i}"), i).unwrap();
    }
    let _: i64 = pc.incr("counter", 41).unwrap();
    let _: i64 = pc.incr("counter", 1).unwrap();
    let _: () = pc.set("gone", "x").unwrap();
    let _: i64 = pc.del("gone").unwrap();
    let _: i64 = pc.append("ap", "a").unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut pc).unwrap();
    assert_eq!(acked, 1);
    // WAIT returned: the replica has every prior write.
    assert_eq!(rc.get::<_, Option<i64>>("k99").unwrap(), Some(99));
    assert_eq!(rc.get::<_, Option<i64>>("counter").unwrap(), Some(42));
    assert_eq!(rc.get::<_, Option<String>>("gone").unwrap(), None);
    assert_eq!(
        rc.get::<_, Option<String>>("ap").unwrap().as_deref(),
        Some("a")
    );
    let size: i64 = redis::cmd("DBSIZE").query(&mut rc).unwrap();
    assert_eq!(size, 104);
    // Replicas refuse writes, serve reads, and cannot WAIT.
    let mut rr = Raw::new(ra);
    assert_eq!(
        rr.cmd(&["SET", "x", "1"]),
        e("READONLY You can't write against a read only replica.")
    );
    assert_eq!(
        rr.cmd(&["INCR", "counter"]),
        e("READONLY You can't write against a read only replica.")
    );
    assert!(
        matches!(rr.cmd(&["WAIT", "1", "10"]), R::E(m) if m.starts_with("ERR WAIT cannot be used with replica instances"))
    );
    assert_eq!(rr.cmd(&["GET", "counter"]), b("42"));
    // INFO and ROLE on both sides.
    let mut pr = Raw::new(pa);
    assert_eq!(info_field(&mut pr, "replication", "role"), "master");
    assert_eq!(info_field(&mut pr, "replication", "connected_slaves"), "1");
    let slave0 = info_field(&mut pr, "replication", "slave0");
    assert!(
        slave0.starts_with(&format!(
            "ip=127.0.0.1,port={},state=online,offset=",
            ra.port()
        )),
        "{slave0}"
    );
    let p_off = info_field(&mut pr, "replication", "master_repl_offset");
    assert_eq!(info_field(&mut rr, "replication", "role"), "slave");
    assert_eq!(
        info_field(&mut rr, "replication", "master_link_status"),
        "up"
    );
    assert_eq!(
        info_field(&mut rr, "replication", "master_port"),
        pa.port().to_string()
    );
    assert_eq!(
        info_field(&mut rr, "replication", "slave_repl_offset"),
        p_off
    );
    assert_eq!(
        info_field(&mut rr, "replication", "master_replid"),
        info_field(&mut pr, "replication", "master_replid")
    );
    let R::A(Some(role)) = pr.cmd(&["ROLE"]) else {
        panic!()
    };
    assert_eq!(role[0], b("master"));
    assert_eq!(role[1], R::I(p_off.parse().unwrap()));
    let R::A(Some(role)) = rr.cmd(&["ROLE"]) else {
        panic!()
    };
    assert_eq!(role[0], b("slave"));
    assert_eq!(role[2], R::I(pa.port() as i64));
    assert_eq!(role[3], b("connected"));
    // WAIT for more replicas than exist returns after the timeout with the count.
    let t0 = Instant::now();
    assert_eq!(pr.cmd(&["WAIT", "2", "100"]), R::I(1));
    assert!(t0.elapsed() >= Duration::from_millis(100));
}

#[test]
fn expiry_and_flush_propagate_to_the_replica() {
    let (_p, pa) = start("    hz 50\n");
    let (_r, ra) = start_replica(pa, "");
    let mut p = Raw::new(pa);
    let mut r = Raw::new(ra);
    common::eventually("link up", || {
        (info_field(&mut r, "replication", "master_link_status") == "up").then_some(())
    });
    assert_eq!(p.cmd(&["SET", "short", "v", "PX", "50"]), ok());
    assert_eq!(p.cmd(&["SET", "long", "v", "EX", "100"]), ok());
    assert_eq!(p.cmd(&["SET", "p", "v"]), ok());
    assert_eq!(p.cmd(&["EXPIRE", "p", "200"]), R::I(1));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    // The same absolute deadlines on both sides.
    let pt = |x: &mut Raw, k: &str| match x.cmd(&["PTTL", k]) {
        R::I(v) => v,
        o => panic!("{o:?}"),
    };
    assert!((pt(&mut p, "long") - pt(&mut r, "long")).abs() < 1000);
    assert!(pt(&mut r, "p") > 198_000);
    // The primary's active expiry deletes `short` and sends DEL: DBSIZE drops on the replica.
    common::eventually("DEL reaches the replica", || {
        (r.cmd(&["DBSIZE"]) == R::I(2)).then_some(())
    });
    assert_eq!(p.cmd(&["FLUSHALL"]), ok());
    common::eventually("FLUSHALL reaches the replica", || {
        (r.cmd(&["DBSIZE"]) == R::I(0)).then_some(())
    });
}

#[test]
fn broken_link_resumes_with_partial_resync() {
    let (_p, pa) = start("");
    let (_r, ra) = start_replica(pa, "");
    let mut p = Raw::new(pa);
    let mut r = Raw::new(ra);
    for i in 0..50 {
        assert_eq!(p.cmd(&["SET", &format!("a{i}"), "v"]), ok());
    }
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    assert_eq!(info_field(&mut p, "stats", "sync_full"), "1");
    // Cut the link from the replica side; writes continue meanwhile.
    assert_eq!(r.cmd(&["CLIENT", "KILL", "TYPE", "master"]), R::I(1));
    for i in 0..50 {
        assert_eq!(p.cmd(&["SET", &format!("b{i}"), "v"]), ok());
    }
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    assert_eq!(r.cmd(&["DBSIZE"]), R::I(100));
    assert_eq!(info_field(&mut p, "stats", "sync_partial_ok"), "1");
    assert_eq!(info_field(&mut p, "stats", "sync_full"), "1");
    assert_eq!(info_field(&mut p, "stats", "sync_partial_err"), "0");
    // Cut from the primary side too.
    assert_eq!(p.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), R::I(1));
    assert_eq!(p.cmd(&["SET", "c", "v"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    assert_eq!(r.cmd(&["GET", "c"]), b("v"));
    assert_eq!(info_field(&mut p, "stats", "sync_partial_ok"), "2");
    assert_eq!(
        info_field(&mut p, "replication", "master_repl_offset"),
        info_field(&mut r, "replication", "master_repl_offset")
    );
}

#[test]
fn restarted_replica_process_does_a_full_sync() {
    let (_p, pa) = start("");
    let mut p = Raw::new(pa);
    assert_eq!(p.cmd(&["SET", "one", "1"]), ok());
    let (r1, _) = start_replica(pa, "");
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    drop(r1);
    common::eventually("primary notices the replica left", || {
        (info_field(&mut p, "replication", "connected_slaves") == "0").then_some(())
    });
    assert_eq!(p.cmd(&["SET", "two", "2"]), ok());
    let (_r2, ra) = start_replica(pa, "");
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    let mut r = Raw::new(ra);
    assert_eq!(
        r.cmd(&["MGET", "one", "two"]),
        R::A(Some(vec![b("1"), b("2")]))
    );
    assert_eq!(info_field(&mut p, "stats", "sync_full"), "2");
    assert_eq!(info_field(&mut p, "stats", "sync_partial_err"), "0");
}

#[test]
fn a_stopped_replica_does_not_stall_the_primary() {
    let (_p, pa) = start("");
    let (rl, _ra) = start_replica(pa, "");
    let mut p = Raw::new(pa);
    assert_eq!(p.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    rl.signal(libc::SIGSTOP);
    let v = "x".repeat(10_000);
    for i in 0..300 {
        assert_eq!(p.cmd(&["SET", &format!("k{}", i % 10), &v]), ok());
    }
    // WAIT with a timeout returns 0: the frozen replica has not acknowledged.
    assert_eq!(p.cmd(&["WAIT", "1", "50"]), R::I(0));
    rl.signal(libc::SIGCONT);
    assert_eq!(p.cmd(&["WAIT", "1", "10000"]), R::I(1));
}

#[test]
fn failover_loses_no_acknowledged_write() {
    let (p, pa) = start("");
    let (_r, ra) = start_replica(pa, "");
    let mut pc = Raw::new(pa);
    let n = 1000;
    let mut req = Vec::new();
    for i in 0..n {
        req.extend(encode(&["SET", &format!("k{i}"), &i.to_string()]));
    }
    pc.send(&req);
    for _ in 0..n {
        assert_eq!(pc.read(), ok());
    }
    assert_eq!(pc.cmd(&["WAIT", "1", "5000"]), R::I(1));
    drop(pc);
    drop(p); // the primary dies
    let mut r = Raw::new(ra);
    common::eventually("replica sees its primary gone", || {
        (info_field(&mut r, "replication", "master_link_status") == "down").then_some(())
    });
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    assert_eq!(info_field(&mut r, "replication", "role"), "master");
    assert_eq!(r.cmd(&["DBSIZE"]), R::I(n));
    for i in 0..n {
        assert_eq!(r.cmd(&["GET", &format!("k{i}")]), b(&i.to_string()));
    }
    assert_eq!(r.cmd(&["SET", "after", "failover"]), ok());
    // The old primary comes back (empty) as a replica of the new one.
    let (_old, oa) = start_replica(ra, "");
    assert_eq!(r.cmd(&["WAIT", "1", "5000"]), R::I(1));
    let mut o = Raw::new(oa);
    assert_eq!(o.cmd(&["GET", "after"]), b("failover"));
    assert_eq!(o.cmd(&["DBSIZE"]), R::I(n + 1));
}

#[test]
fn live_primary_demoted_after_promotion_follows_the_new_primary() {
    let (_p, pa) = start("");
    let (_r, ra) = start_replica(pa, "");
    let mut p = Raw::new(pa);
    let mut r = Raw::new(ra);
    assert_eq!(p.cmd(&["SET", "k", "1"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    // Promote the replica, then make the old primary its replica (SLAVEOF spelling).
    assert_eq!(r.cmd(&["REPLICAOF", "no", "one"]), ok());
    assert_eq!(r.cmd(&["SET", "k", "2"]), ok());
    assert_eq!(
        p.cmd(&["SLAVEOF", "127.0.0.1", &ra.port().to_string()]),
        ok()
    );
    assert_eq!(
        p.cmd(&["SLAVEOF", "127.0.0.1", &ra.port().to_string()]),
        R::S("OK Already connected to specified master".into())
    );
    assert_eq!(r.cmd(&["WAIT", "1", "5000"]), R::I(1));
    assert_eq!(p.cmd(&["GET", "k"]), b("2"));
    assert_eq!(
        p.cmd(&["SET", "k", "3"]),
        e("READONLY You can't write against a read only replica.")
    );
    // The old primary wrote nothing after the promotion point: a partial resync sufficed.
    assert_eq!(info_field(&mut r, "stats", "sync_partial_ok"), "1");
    assert_eq!(info_field(&mut r, "stats", "sync_full"), "0");
    assert_eq!(
        r.cmd(&["REPLICAOF", "127.0.0.1", "notaport"]),
        e("ERR value is not an integer or out of range")
    );
}

#[test]
fn replica_authenticates_with_masterauth() {
    let (_p, pa) = start("    requirepass sesame\n");
    let (_r, ra) = start_replica(pa, "    masterauth sesame\n");
    let mut p = Raw::new(pa);
    assert_eq!(p.cmd(&["AUTH", "sesame"]), ok());
    assert_eq!(p.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    let mut r = Raw::new(ra);
    assert_eq!(r.cmd(&["GET", "k"]), b("v"));
}

#[test]
fn replica_without_the_password_stays_down() {
    let (_p, pa) = start("    requirepass sesame\n");
    let (_r, ra) = start_replica(pa, "");
    let mut r = Raw::new(ra);
    assert_eq!(
        info_field(&mut r, "replication", "master_link_status"),
        "down"
    );
    let mut p = Raw::new(pa);
    assert_eq!(p.cmd(&["AUTH", "sesame"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "200"]), R::I(0));
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let (_lb, a) = start("    timeout 100ms\n");
    let mut r = Raw::new(a);
    assert_eq!(r.cmd(&["PING"]), R::S("PONG".into()));
    let t0 = Instant::now();
    assert!(r.rest().is_empty());
    assert!(t0.elapsed() >= Duration::from_millis(90));
}

#[test]
fn a_replica_beyond_the_backlog_gets_a_full_sync() {
    let (_p, pa) = start("    repl-backlog-size 16k\n");
    let (rl, ra) = start_replica(pa, "");
    let mut p = Raw::new(pa);
    assert_eq!(p.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), R::I(1));
    // Freeze the replica while far more than the backlog (and the socket buffers) is written.
    rl.signal(libc::SIGSTOP);
    let v = "x".repeat(100_000);
    let mut req = Vec::new();
    for i in 0..400 {
        req.extend(encode(&["SET", &format!("big{}", i % 20), &v]));
    }
    req.extend(encode(&["SET", "last", "1"]));
    p.send(&req);
    for _ in 0..401 {
        assert_eq!(p.read(), ok());
    }
    rl.signal(libc::SIGCONT);
    assert_eq!(p.cmd(&["WAIT", "1", "10000"]), R::I(1));
    assert_eq!(info_field(&mut p, "stats", "sync_full"), "2");
    let mut r = Raw::new(ra);
    assert_eq!(r.cmd(&["GET", "last"]), b("1"));
    assert_eq!(r.cmd(&["DBSIZE"]), R::I(22));
    assert_eq!(
        info_field(&mut r, "replication", "slave_repl_offset"),
        info_field(&mut p, "replication", "master_repl_offset")
    );
}
