//! kv's hashes, lists, sets and sorted sets against a real Redis 7 (Debian's
//! redis-server): replies byte for byte, RDB replication of every type and
//! encoding both ways, then the stream; AOF and dump.rdb across restarts.
//! Each test skips with a notice when redis-server is missing.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use common::redis_server::{client, have, Redis};
use common::{eventually, Lb, TempDir};

fn skip() -> bool {
    if have("redis-server") && have("redis-check-rdb") {
        return false;
    }
    eprintln!(
        "SKIPPED: redis-server / redis-check-rdb not installed (apt-get install redis-server)"
    );
    true
}

fn info_field(c: &mut redis::Connection, section: &str, name: &str) -> Option<String> {
    let i: String = redis::cmd("INFO").arg(section).query(c).ok()?;
    i.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

/// Every key as "type: value" in a canonical form (unordered types sorted),
/// with whether it has a TTL: what two servers must agree on.
fn contents(c: &mut redis::Connection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let t: String = redis::cmd("TYPE").arg(&k).query(c).unwrap();
        let v: Vec<String> = match t.as_str() {
            "string" => vec![redis::cmd("GET").arg(&k).query(c).unwrap()],
            "list" => redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(c)
                .unwrap(),
            "hash" => {
                let m: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&k).query(c).unwrap();
                m.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
            }
            "set" => {
                let mut m: Vec<String> = redis::cmd("SMEMBERS").arg(&k).query(c).unwrap();
                m.sort();
                m
            }
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
                .unwrap(),
            other => vec![format!("unexpected type {other}")],
        };
        let ttl: i64 = redis::cmd("TTL").arg(&k).query(c).unwrap();
        let ttl = if ttl > 0 { " ttl" } else { "" };
        out.insert(k, format!("{t}{ttl}: {}", v.join(",")));
    }
    out
}

/// Keys of every type, small (listpack/intset) and big (hashtable, quicklist,
/// skiplist), one with a TTL, written through `c`.
fn fill(c: &mut redis::Connection, tag: &str) {
    let mut p = redis::pipe();
    p.cmd("SET").arg(format!("{tag}:str")).arg("v").ignore();
    p.cmd("HSET")
        .arg(format!("{tag}:hash"))
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg(12)
        .ignore();
    p.cmd("RPUSH")
        .arg(format!("{tag}:list"))
        .arg("a")
        .arg(2)
        .arg("c")
        .ignore();
    p.cmd("SADD")
        .arg(format!("{tag}:intset"))
        .arg(1)
        .arg(-5)
        .arg(300000)
        .ignore();
    p.cmd("SADD")
        .arg(format!("{tag}:set"))
        .arg("x")
        .arg("y")
        .ignore();
    p.cmd("ZADD")
        .arg(format!("{tag}:zset"))
        .arg(1.5)
        .arg("a")
        .arg("-inf")
        .arg("b")
        .arg(3)
        .arg("c")
        .ignore();
    p.cmd("HSET")
        .arg(format!("{tag}:ttl"))
        .arg("f")
        .arg("v")
        .ignore();
    p.cmd("EXPIRE").arg(format!("{tag}:ttl")).arg(1000).ignore();
    for i in 0..600 {
        p.cmd("HSET")
            .arg(format!("{tag}:bighash"))
            .arg(format!("field{i}"))
            .arg("x".repeat(i % 100))
            .ignore();
        p.cmd("RPUSH")
            .arg(format!("{tag}:biglist"))
            .arg(format!("{i}-{}", "y".repeat(i % 70)))
            .ignore();
        p.cmd("SADD")
            .arg(format!("{tag}:bigset"))
            .arg(format!("m{i}"))
            .ignore();
        p.cmd("SADD")
            .arg(format!("{tag}:bigints"))
            .arg(i * 7)
            .ignore();
        p.cmd("ZADD")
            .arg(format!("{tag}:bigzset"))
            .arg(i as f64 / 3.0)
            .arg(format!("member{i}"))
            .ignore();
    }
    let () = p.query(c).unwrap();
}

/// Writes of every type that must reach a replica through the stream.
fn stream_writes(c: &mut redis::Connection, tag: &str) {
    let mut p = redis::pipe();
    p.cmd("HSET")
        .arg(format!("{tag}:hash"))
        .arg("f3")
        .arg("new")
        .ignore();
    p.cmd("HINCRBYFLOAT")
        .arg(format!("{tag}:hash"))
        .arg("f2")
        .arg("0.25")
        .ignore();
    p.cmd("HDEL").arg(format!("{tag}:hash")).arg("f1").ignore();
    p.cmd("LPUSH")
        .arg(format!("{tag}:list"))
        .arg("head")
        .ignore();
    p.cmd("LMOVE")
        .arg(format!("{tag}:list"))
        .arg(format!("{tag}:list2"))
        .arg("RIGHT")
        .arg("LEFT")
        .ignore();
    p.cmd("LTRIM")
        .arg(format!("{tag}:biglist"))
        .arg(5)
        .arg(-5)
        .ignore();
    p.cmd("SPOP").arg(format!("{tag}:bigset")).arg(3).ignore();
    p.cmd("SREM").arg(format!("{tag}:intset")).arg(1).ignore();
    p.cmd("SINTERSTORE")
        .arg(format!("{tag}:inter"))
        .arg(format!("{tag}:bigints"))
        .arg(format!("{tag}:intset"))
        .ignore();
    p.cmd("ZADD")
        .arg(format!("{tag}:zset"))
        .arg("INCR")
        .arg(2)
        .arg("a")
        .ignore();
    p.cmd("ZPOPMAX")
        .arg(format!("{tag}:bigzset"))
        .arg(2)
        .ignore();
    p.cmd("ZREMRANGEBYSCORE")
        .arg(format!("{tag}:bigzset"))
        .arg("(10")
        .arg(20)
        .ignore();
    p.cmd("SET").arg(format!("{tag}:done")).arg(1).ignore();
    let () = p.query(c).unwrap();
}

fn start_kv(extra: &str) -> (Lb, SocketAddr) {
    let lb = Lb::start(&format!("kv main\n    bind 127.0.0.1:0\n{extra}"), 1);
    let a = lb.addr("kv", "main");
    (lb, a)
}

/// Reads until the reply carrying `marker`; everything read.
fn read_until(s: &mut std::net::TcpStream, marker: &[u8]) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut b = [0u8; 8192];
    while !got.ends_with(marker) {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends inline commands and returns every reply byte up to and including the
/// reply carrying `__END__` (the script's last command). `prelude` runs first
/// (HELLO 3) and its replies, which carry the connection id, are dropped.
fn run_with(addr: SocketAddr, prelude: &str, script: &str) -> String {
    use std::io::Write;
    let mut s = common::connect(addr);
    if !prelude.is_empty() {
        s.write_all(format!("{prelude}ECHO __PRELUDE__\r\n").as_bytes())
            .unwrap();
        read_until(&mut s, b"__PRELUDE__\r\n");
    }
    s.write_all(script.as_bytes()).unwrap();
    read_until(&mut s, b"__END__\r\n")
}

fn same_bytes(redis: SocketAddr, kv: SocketAddr, script: &str) {
    same_bytes_after(redis, kv, "", script)
}

fn same_bytes_after(redis: SocketAddr, kv: SocketAddr, prelude: &str, script: &str) {
    let r = run_with(redis, prelude, script);
    let k = run_with(kv, prelude, script);
    let (r, k): (Vec<&str>, Vec<&str>) = (r.split("\r\n").collect(), k.split("\r\n").collect());
    for (i, (a, b)) in r.iter().zip(&k).enumerate() {
        let from = i.saturating_sub(12);
        assert_eq!(
            b,
            a,
            "line {i}: kv {:?}\nredis {:?}",
            &k[from..=i],
            &r[from..=i]
        );
    }
    assert_eq!(r.len(), k.len());
}

#[test]
fn hash_commands_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nHSET h a 1 b 2 c 3\r\nHSET h a 10 d 4\r\nHSET h x\r\nHGET h a\r\nHGET h zz\r\nHGET nokey a\r\n",
            "HMGET h a b zz\r\nHMGET nokey a\r\nHGETALL h\r\nHKEYS h\r\nHVALS h\r\nHLEN h\r\nHLEN nokey\r\n",
            "HEXISTS h a\r\nHEXISTS h zz\r\nHSTRLEN h a\r\nHSTRLEN h zz\r\nHSETNX h a 5\r\nHSETNX h e 5\r\n",
            "HDEL h a zz\r\nHDEL h zz\r\nHDEL nokey a\r\nHGETALL h\r\nHMSET h2 f v\r\nHMSET h2 f\r\n",
            "HINCRBY h b 5\r\nHINCRBY h new -3\r\nHINCRBY h b x\r\nHSET h s abc\r\nHINCRBY h s 1\r\n",
            "HSET h big 9223372036854775807\r\nHINCRBY h big 1\r\n",
            "HINCRBYFLOAT h f 10.5\r\nHINCRBYFLOAT h f 0.1\r\nHINCRBYFLOAT h f -5e0\r\nHINCRBYFLOAT h s 1\r\nHINCRBYFLOAT h f x\r\nHINCRBYFLOAT h f inf\r\n",
            "HRANDFIELD nokey\r\nHRANDFIELD nokey 5\r\nHSET one k v\r\nHRANDFIELD one\r\nHRANDFIELD one 5 WITHVALUES\r\nHRANDFIELD one -2 WITHVALUES\r\n",
            "HRANDFIELD one 1 FOO\r\nHRANDFIELD one x\r\nHSCAN one 0\r\nHSCAN nokey 0\r\nHSCAN h 0 MATCH b*\r\nHSCAN h x\r\n",
            "SET str v\r\nHGET str a\r\nHSET str a b\r\nGET h\r\nINCR h\r\nAPPEND h x\r\nSET h v GET\r\nTYPE h\r\nTYPE str\r\nTYPE nokey\r\n",
            "OBJECT ENCODING h\r\nHSET long f 01234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n",
            "OBJECT ENCODING long\r\nMGET h str\r\nDEL h2\r\nHDEL one k\r\nEXISTS one\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn list_commands_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nRPUSH l a b c\r\nLPUSH l z y\r\nLRANGE l 0 -1\r\nLPUSHX nokey a\r\nRPUSHX l d\r\nLLEN l\r\nLLEN nokey\r\n",
            "LRANGE l 1 2\r\nLRANGE l -2 -1\r\nLRANGE l 5 1\r\nLRANGE l 0 100\r\nLRANGE l x 1\r\nLRANGE nokey 0 -1\r\n",
            "LINDEX l 0\r\nLINDEX l -1\r\nLINDEX l 99\r\nLINDEX l x\r\nLSET l 0 A\r\nLSET l 99 A\r\nLSET nokey 0 a\r\n",
            "LINSERT l BEFORE b B\r\nLINSERT l AFTER b B2\r\nLINSERT l AFTER nope x\r\nLINSERT l MIDDLE b x\r\nLINSERT nokey BEFORE a b\r\nLRANGE l 0 -1\r\n",
            "RPUSH r a b a c a\r\nLREM r 2 a\r\nLRANGE r 0 -1\r\nRPUSH r a a\r\nLREM r -1 a\r\nLRANGE r 0 -1\r\nLREM r 0 a\r\nLREM r 0 zz\r\nLREM r x a\r\n",
            "RPUSH p a b c a b c\r\nLPOS p b\r\nLPOS p b RANK 2\r\nLPOS p b RANK -1\r\nLPOS p b COUNT 0\r\nLPOS p b COUNT 1 RANK -1\r\n",
            "LPOS p zz\r\nLPOS p zz COUNT 2\r\nLPOS p b MAXLEN 1\r\nLPOS p b RANK 0\r\nLPOS p b COUNT -1\r\nLPOS p b MAXLEN -1\r\nLPOS p b FOO\r\nLPOS nokey a\r\nLPOS nokey a COUNT 1\r\n",
            "LPOP p\r\nRPOP p\r\nLPOP p 2\r\nRPOP p 0\r\nLPOP p -1\r\nLPOP p x\r\nLPOP p 1 2\r\nLPOP nokey\r\nLPOP nokey 2\r\nRPOP p 10\r\nEXISTS p\r\n",
            "RPUSH t 1 2 3 4 5\r\nLTRIM t 1 -2\r\nLRANGE t 0 -1\r\nLTRIM t 5 1\r\nEXISTS t\r\nLTRIM nokey 0 1\r\n",
            "RPUSH m a b c\r\nLMOVE m m2 LEFT RIGHT\r\nLMOVE m m2 RIGHT LEFT\r\nLRANGE m2 0 -1\r\nLMOVE m m2 UP LEFT\r\nLMOVE nokey m2 LEFT LEFT\r\n",
            "RPOPLPUSH m m2\r\nEXISTS m\r\nLRANGE m2 0 -1\r\nRPOPLPUSH m2 m2\r\nLRANGE m2 0 -1\r\nSET s v\r\nLMOVE m2 s LEFT LEFT\r\nLRANGE m2 0 -1\r\n",
            "LPUSH s a\r\nLRANGE s 0 1\r\nTYPE m2\r\nOBJECT ENCODING m2\r\nDEL m2\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn set_commands_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nSADD i 3 1 2 -10 1\r\nSMEMBERS i\r\nOBJECT ENCODING i\r\nSADD s a b c\r\nOBJECT ENCODING s\r\nSCARD s\r\nSCARD nokey\r\n",
            "SISMEMBER s a\r\nSISMEMBER s z\r\nSISMEMBER nokey a\r\nSMISMEMBER s a z b\r\nSMISMEMBER nokey a\r\nSREM s a z\r\nSREM nokey a\r\n",
            "SADD i2 2 3 4\r\nSINTER i i2\r\nSUNION i i2\r\nSDIFF i i2\r\nSINTER i nokey\r\nSDIFF nokey i\r\nSUNION nokey\r\n",
            "SINTERSTORE d i i2\r\nSMEMBERS d\r\nSUNIONSTORE d i i2\r\nSMEMBERS d\r\nSDIFFSTORE d i i2\r\nSMEMBERS d\r\nSINTERSTORE d i nokey\r\nEXISTS d\r\n",
            "SINTERCARD 2 i i2\r\nSINTERCARD 2 i i2 LIMIT 1\r\nSINTERCARD 0 i\r\nSINTERCARD 3 i i2\r\nSINTERCARD 2 i i2 LIMIT -1\r\nSINTERCARD 2 i i2 FOO\r\nSINTERCARD x i\r\n",
            "SMOVE i i3 2\r\nSMOVE i i3 99\r\nSMEMBERS i3\r\nSMOVE nokey i3 1\r\nSMOVE i i 3\r\n",
            "SADD one x\r\nSPOP one\r\nEXISTS one\r\nSPOP nokey\r\nSPOP nokey 3\r\nSPOP i -1\r\nSPOP i x\r\nSPOP i 1 2\r\nSPOP i 0\r\n",
            "SADD one x\r\nSRANDMEMBER one\r\nSRANDMEMBER one 5\r\nSRANDMEMBER one -2\r\nSRANDMEMBER nokey\r\nSRANDMEMBER nokey 3\r\nSRANDMEMBER i 100\r\nSRANDMEMBER i x\r\n",
            "SSCAN i 0\r\nSSCAN i 0 MATCH 1*\r\nSSCAN nokey 0\r\nSSCAN i 0 COUNT 0\r\n",
            "SET str v\r\nSADD str a\r\nSMEMBERS str\r\nSINTER i str\r\nSUNIONSTORE d str\r\nSMOVE i str 1\r\nTYPE i\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn zset_commands_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nZADD z 1 a 2 b 3 c\r\nZADD z 1.5 a 0.1 d\r\nZADD z CH 1 a 5 e\r\nZADD z NX 9 a 6 f\r\nZADD z XX 9 a 7 g\r\n",
            "ZADD z GT 1 a\r\nZADD z LT CH 1 a\r\nZADD z INCR 2 b\r\nZADD z NX INCR 2 b\r\nZADD z XX INCR 1 nope\r\n",
            "ZADD z NX XX 1 a\r\nZADD z GT LT 1 a\r\nZADD z INCR 1 a 2 b\r\nZADD z 1\r\nZADD z x a\r\nZADD z nan a\r\nZADD nokey XX 1 a\r\n",
            "ZRANGE z 0 -1 WITHSCORES\r\nZSCORE z a\r\nZSCORE z nope\r\nZMSCORE z a nope d\r\nZMSCORE nokey a\r\nZCARD z\r\nZCARD nokey\r\n",
            "ZINCRBY z 2.5 a\r\nZINCRBY z 1 new\r\nZINCRBY z x a\r\nZADD inf +inf x -inf y\r\nZINCRBY inf -inf x\r\nZRANGE inf 0 -1 WITHSCORES\r\n",
            "ZCOUNT z -inf +inf\r\nZCOUNT z (1 3\r\nZCOUNT z x 1\r\nZRANK z a\r\nZREVRANK z a\r\nZRANK z nope\r\nZRANK nokey a\r\n",
            "ZRANGE z 1 2\r\nZRANGE z -2 -1 WITHSCORES\r\nZRANGE z 0 1 REV\r\nZREVRANGE z 0 1 WITHSCORES\r\nZRANGE z 5 1\r\nZRANGE z x 1\r\n",
            "ZRANGE z 1 3 BYSCORE\r\nZRANGE z (1 3 BYSCORE WITHSCORES\r\nZRANGE z 3 1 BYSCORE REV\r\nZRANGE z -inf +inf BYSCORE LIMIT 1 2\r\n",
            "ZRANGE z -inf +inf BYSCORE LIMIT -1 2\r\nZRANGE z 0 1 LIMIT 0 1\r\nZRANGE z - + BYLEX WITHSCORES\r\nZRANGE z 0 1 FOO\r\nZRANGE z a b BYSCORE\r\n",
            "ZRANGEBYSCORE z 2 +inf\r\nZRANGEBYSCORE z 2 +inf WITHSCORES LIMIT 0 1\r\nZREVRANGEBYSCORE z +inf 2\r\nZRANGEBYSCORE z 2 1\r\n",
            "ZADD lex 0 a 0 b 0 c 0 d 0 e\r\nZRANGEBYLEX lex - +\r\nZRANGEBYLEX lex [b (d\r\nZREVRANGEBYLEX lex + [c\r\nZRANGEBYLEX lex b c\r\nZLEXCOUNT lex (a [c\r\nZLEXCOUNT lex - x\r\n",
            "ZRANGE lex [b + BYLEX LIMIT 1 1\r\nZRANGE lex + - BYLEX REV\r\nZRANGEBYLEX lex - + LIMIT 2 10\r\n",
            "ZRANGESTORE dst z 0 1\r\nZRANGE dst 0 -1 WITHSCORES\r\nZRANGESTORE dst lex [b [c BYLEX\r\nZRANGE dst 0 -1\r\nZRANGESTORE dst z 5 1\r\nEXISTS dst\r\nZRANGESTORE dst z 0 1 WITHSCORES\r\n",
            "ZPOPMIN z\r\nZPOPMAX z 2\r\nZPOPMIN z -1\r\nZPOPMIN nokey\r\nZPOPMIN z 0\r\nZPOPMIN z 1 2\r\n",
            "ZREM z a nope\r\nZREM nokey a\r\nZREMRANGEBYRANK lex 0 0\r\nZREMRANGEBYLEX lex [c [d\r\nZREMRANGEBYSCORE z 1 2\r\nZRANGE lex 0 -1\r\nZREMRANGEBYRANK lex x 1\r\n",
            "ZADD one 1 x\r\nZRANDMEMBER one\r\nZRANDMEMBER one 3 WITHSCORES\r\nZRANDMEMBER one -2\r\nZRANDMEMBER nokey\r\nZRANDMEMBER nokey 1\r\n",
            "ZSCAN one 0\r\nZSCAN nokey 0\r\nZADD f 0.1 a 1e20 b -3 c 123456789 d\r\nZRANGE f 0 -1 WITHSCORES\r\nOBJECT ENCODING f\r\n",
            "SET str v\r\nZADD str 1 a\r\nZRANGE str 0 1\r\nZSCORE str a\r\nTYPE f\r\nZPOPMIN one 5\r\nEXISTS one\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn a_redis_replica_of_kv_gets_every_type_then_the_stream() {
    if skip() {
        return;
    }
    let (_lb, kv) = start_kv("");
    let mut k = client(kv);
    fill(&mut k, "t");
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &kv.port().to_string()]);
    let mut r = client(replica.addr);
    eventually("the Redis replica to load kv's RDB", || {
        (info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up"))
            .then_some(())
    });
    let want = contents(&mut k);
    assert_eq!(want.len(), 12);
    assert_eq!(contents(&mut r), want, "redis log:\n{}", replica.log());
    // Redis picked its own encodings for what it loaded.
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("t:bigzset")
        .query(&mut r)
        .unwrap();
    assert_eq!(enc, "skiplist");
    stream_writes(&mut k, "t");
    eventually("the stream on the Redis replica", || {
        redis::cmd("GET")
            .arg("t:done")
            .query::<Option<String>>(&mut r)
            .ok()
            .flatten()
    });
    assert_eq!(contents(&mut r), contents(&mut k));
}

#[test]
fn kv_replicates_every_type_and_encoding_from_a_redis_primary() {
    if skip() {
        return;
    }
    for diskless in ["no", "yes"] {
        let primary = Redis::start(&[
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let mut p = client(primary.addr);
        fill(&mut p, "r");
        let (_lb, kv) = start_kv(&format!("    replicaof {}\n", primary.addr));
        let mut k = client(kv);
        eventually("kv to load Redis's RDB", || {
            (info_field(&mut k, "replication", "master_link_status").as_deref() == Some("up"))
                .then_some(())
        });
        let want = contents(&mut p);
        assert_eq!(contents(&mut k), want, "diskless {diskless}");
        stream_writes(&mut p, "r");
        eventually("the stream on kv", || {
            redis::cmd("GET")
                .arg("r:done")
                .query::<Option<String>>(&mut k)
                .ok()
                .flatten()
        });
        assert_eq!(contents(&mut k), contents(&mut p), "diskless {diskless}");
        assert_eq!(
            info_field(&mut k, "replication", "kv_diverged").as_deref(),
            Some("0")
        );
    }
}

#[test]
fn every_type_survives_kill_9_through_the_aof_and_loads_into_redis_from_dump_rdb() {
    if skip() {
        return;
    }
    let data = TempDir::new("kv-types");
    let conf = format!(
        "kv main\n    bind 127.0.0.1:0\n    dir {}\n    appendonly yes\n    appendfsync always\n",
        data.path().display()
    );
    let mut lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    fill(&mut c, "a");
    // A rewrite turns the collections into HSET/RPUSH/SADD/ZADD commands...
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    eventually("the AOF rewrite to finish", || {
        (info_field(&mut c, "persistence", "aof_rewrite_in_progress").as_deref() == Some("0"))
            .then_some(())
    });
    // ...and later writes are appended after it.
    stream_writes(&mut c, "a");
    let want = contents(&mut c);
    lb.child.kill().unwrap();
    let _ = lb.child.wait();
    drop(lb);

    let lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    assert_eq!(contents(&mut c), want);

    // dump.rdb with every type: redis-check-rdb accepts it and redis-server loads it.
    let () = redis::cmd("SAVE").query(&mut c).unwrap();
    let rdb = data.path().join("dump.rdb");
    let check = Command::new("redis-check-rdb").arg(&rdb).output().unwrap();
    assert!(
        check.status.success(),
        "redis-check-rdb: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let rdir = TempDir::new("redis-types");
    std::fs::copy(&rdb, rdir.path().join("dump.rdb")).unwrap();
    let redis = Redis::start(&["--dir", rdir.path().to_str().unwrap()]);
    let mut r = client(redis.addr);
    assert_eq!(contents(&mut r), want);

    // And kv loads Redis's own dump.rdb (listpack, intset, quicklist, skiplist...).
    let () = redis::cmd("SAVE").query(&mut r).unwrap();
    drop(c);
    drop(lb);
    let kdir = TempDir::new("kv-from-redis");
    std::fs::copy(rdir.path().join("dump.rdb"), kdir.path().join("dump.rdb")).unwrap();
    let lb = Lb::start(
        &format!(
            "kv main\n    bind 127.0.0.1:0\n    dir {}\n",
            kdir.path().display()
        ),
        1,
    );
    let mut c = client(lb.addr("kv", "main"));
    assert_eq!(contents(&mut c), want);
}

/// `contents` of every database, by number (empty ones left out).
fn all_dbs(c: &mut redis::Connection) -> BTreeMap<u32, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for db in 0..16 {
        let () = redis::cmd("SELECT").arg(db).query(c).unwrap();
        let m = contents(c);
        if !m.is_empty() {
            out.insert(db, m);
        }
    }
    let () = redis::cmd("SELECT").arg(0).query(c).unwrap();
    out
}

/// Keys of several types in databases 0, 3 and 15 through one connection.
fn fill_dbs(c: &mut redis::Connection, tag: &str) {
    for db in [0, 3, 15] {
        let () = redis::cmd("SELECT").arg(db).query(c).unwrap();
        let mut p = redis::pipe();
        p.cmd("SET").arg(format!("{tag}:s")).arg(db).ignore();
        p.cmd("HSET")
            .arg(format!("{tag}:h{db}"))
            .arg("f")
            .arg(db)
            .ignore();
        p.cmd("ZADD")
            .arg(format!("{tag}:z"))
            .arg(db)
            .arg("m")
            .ignore();
        p.cmd("SET")
            .arg(format!("{tag}:ttl"))
            .arg("v")
            .arg("EX")
            .arg(1000)
            .ignore();
        let () = p.query(c).unwrap();
    }
    let () = redis::cmd("SELECT").arg(0).query(c).unwrap();
}

/// Writes in several databases, ending with a marker in database 0.
fn db_stream_writes(c: &mut redis::Connection, tag: &str) {
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(5).ignore();
    p.cmd("RPUSH")
        .arg(format!("{tag}:l"))
        .arg("a")
        .arg("b")
        .ignore();
    p.cmd("SELECT").arg(3).ignore();
    p.cmd("MOVE").arg(format!("{tag}:s")).arg(7).ignore();
    p.cmd("SWAPDB").arg(15).arg(14).ignore();
    p.cmd("MULTI").ignore();
    p.cmd("INCR").arg(format!("{tag}:n")).ignore();
    p.cmd("SELECT").arg(1).ignore();
    p.cmd("INCR").arg(format!("{tag}:n")).ignore();
    p.cmd("EXEC").ignore();
    p.cmd("SELECT").arg(0).ignore();
    p.cmd("SET").arg(format!("{tag}:done")).arg(1).ignore();
    let () = p.query(c).unwrap();
}

#[test]
fn sixteen_databases_match_redis_and_replicate_both_ways() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nSELECT 1\r\nSET a 1\r\nDBSIZE\r\nSELECT 0\r\nGET a\r\nDBSIZE\r\nSELECT 16\r\nSELECT -1\r\nSELECT x\r\n",
            "SET b 2\r\nMOVE b 1\r\nMOVE b 1\r\nMOVE nokey 1\r\nMOVE b 0\r\nMOVE b 99\r\nMOVE b x\r\nSELECT 1\r\nMGET a b\r\n",
            "SET b other\r\nSELECT 0\r\nSET b mine\r\nMOVE b 1\r\nSELECT 1\r\nGET b\r\nSWAPDB 0 1\r\nMGET a b\r\nSELECT 0\r\nMGET a b\r\nDBSIZE\r\n",
            "SWAPDB 0 16\r\nSWAPDB x 1\r\nSWAPDB 1 x\r\nSWAPDB 2 2\r\nCOPY a a DB 1\r\nCOPY a z DB 2\r\nSELECT 2\r\nGET z\r\nCOPY z z DB 99\r\n",
            "FLUSHDB\r\nDBSIZE\r\nSELECT 0\r\nDBSIZE\r\nFLUSHALL\r\nSELECT 1\r\nDBSIZE\r\n",
            "ECHO __END__\r\n"
        ),
    );

    // kv primary -> Redis replica: every database in the RDB, then SELECTs in the stream.
    let mut k = client(kv);
    fill_dbs(&mut k, "p");
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &kv.port().to_string()]);
    let mut r = client(replica.addr);
    eventually("the Redis replica to load kv's RDB", || {
        (info_field(&mut r, "replication", "master_link_status").as_deref() == Some("up"))
            .then_some(())
    });
    let want = all_dbs(&mut k);
    assert_eq!(want.len(), 3);
    assert_eq!(all_dbs(&mut r), want, "redis log:\n{}", replica.log());
    db_stream_writes(&mut k, "p");
    eventually("the stream on the Redis replica", || {
        redis::cmd("GET")
            .arg("p:done")
            .query::<Option<String>>(&mut r)
            .ok()
            .flatten()
    });
    assert_eq!(all_dbs(&mut r), all_dbs(&mut k));

    // Redis primary -> kv replica.
    let primary = Redis::start(&[]);
    let mut p = client(primary.addr);
    fill_dbs(&mut p, "q");
    let (_lb2, kv2) = start_kv(&format!("    replicaof {}\n", primary.addr));
    let mut k2 = client(kv2);
    eventually("kv to load Redis's RDB", || {
        (info_field(&mut k2, "replication", "master_link_status").as_deref() == Some("up"))
            .then_some(())
    });
    assert_eq!(all_dbs(&mut k2), all_dbs(&mut p));
    db_stream_writes(&mut p, "q");
    eventually("the stream on kv", || {
        redis::cmd("GET")
            .arg("q:done")
            .query::<Option<String>>(&mut k2)
            .ok()
            .flatten()
    });
    assert_eq!(all_dbs(&mut k2), all_dbs(&mut p));
    assert_eq!(
        info_field(&mut k2, "replication", "kv_diverged").as_deref(),
        Some("0")
    );
}

#[test]
fn databases_survive_restart_through_the_aof_and_dump_rdb() {
    if skip() {
        return;
    }
    let data = TempDir::new("kv-dbs");
    let conf = format!(
        "kv main\n    bind 127.0.0.1:0\n    dir {}\n    appendonly yes\n",
        data.path().display()
    );
    let lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    fill_dbs(&mut c, "a");
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    eventually("the AOF rewrite to finish", || {
        (info_field(&mut c, "persistence", "aof_rewrite_in_progress").as_deref() == Some("0"))
            .then_some(())
    });
    db_stream_writes(&mut c, "a");
    let want = all_dbs(&mut c);
    let () = redis::cmd("SAVE").query(&mut c).unwrap();
    drop(c);
    drop(lb);
    let lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    assert_eq!(all_dbs(&mut c), want);
    let rdir = TempDir::new("redis-dbs");
    std::fs::copy(data.path().join("dump.rdb"), rdir.path().join("dump.rdb")).unwrap();
    let redis = Redis::start(&["--dir", rdir.path().to_str().unwrap()]);
    let mut r = client(redis.addr);
    assert_eq!(all_dbs(&mut r), want);
}

#[test]
fn resp3_replies_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes_after(
        redis.addr,
        kv,
        "FLUSHALL\r\nHELLO 3\r\n",
        concat!(
            "GET nokey\r\nHSET h a 1 b 2\r\nHGETALL h\r\nHGET h zz\r\nHMGET h a zz\r\nHRANDFIELD h 5 WITHVALUES\r\nHRANDFIELD nokey\r\n",
            "SADD s 3 1 2\r\nSMEMBERS s\r\nSINTER s s\r\nSUNION s nokey\r\nSDIFF s nokey\r\nSPOP nokey\r\n",
            "RPUSH l a\r\nLPOP nokey\r\nLPOP nokey 2\r\nLPOS l zz\r\nLINDEX l 5\r\n",
            "ZADD z 1 a 2.5 b\r\nZSCORE z b\r\nZSCORE z nope\r\nZMSCORE z a nope\r\nZINCRBY z 1 a\r\nZADD z INCR 1 a\r\nZADD z NX INCR 1 a\r\n",
            "ZRANGE z 0 -1 WITHSCORES\r\nZRANGE z 0 -1\r\nZRANGEBYSCORE z -inf +inf WITHSCORES\r\nZRANDMEMBER z 5 WITHSCORES\r\nZRANK z nope\r\n",
            "ZPOPMIN z\r\nZPOPMAX z 1\r\nZPOPMIN nokey 2\r\nZSCAN z 0\r\nCONFIG GET maxmemory\r\n",
            "MULTI\r\nSET k v\r\nEXEC\r\nWATCH k\r\nSET k w\r\nMULTI\r\nGET k\r\nEXEC\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn blocking_pops_match_redis_and_wake_on_a_push() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    // What does not wait: served at once, timeouts, errors, inside MULTI.
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nRPUSH l a b\r\nBLPOP nokey l 1\r\nBRPOP l 1\r\nBLPOP nokey 0.05\r\nBRPOP l x\r\nBRPOP l -1\r\n",
            "RPUSH s 1 2\r\nBLMOVE s d LEFT RIGHT 1\r\nBRPOPLPUSH s d 1\r\nLRANGE d 0 -1\r\nBLMOVE s d UP LEFT 1\r\nBLMOVE s d LEFT LEFT 0.05\r\n",
            "ZADD z 1 a 2 b\r\nBZPOPMIN z 1\r\nBZPOPMAX z 1\r\nBZPOPMIN z 0.05\r\nSET str v\r\nBLPOP str 1\r\nBZPOPMIN str 1\r\n",
            "MULTI\r\nBLPOP nokey 0\r\nBLMOVE nokey d LEFT LEFT 0\r\nEXEC\r\n",
            "ECHO __END__\r\n"
        ),
    );
    // A blocked client is served by another's push, in the key order it asked.
    use std::io::{Read, Write};
    let mut waiter = common::connect(kv);
    waiter.set_read_timeout(Some(common::WAIT)).unwrap();
    waiter.write_all(b"BLPOP q1 q2 0\r\n").unwrap();
    let mut k = client(kv);
    eventually("the BLPOP to block", || {
        (info_field(&mut k, "clients", "blocked_clients").as_deref() == Some("1")).then_some(())
    });
    let _: i64 = redis::cmd("RPUSH")
        .arg("q2")
        .arg("job")
        .query(&mut k)
        .unwrap();
    let want = b"*2\r\n$2\r\nq2\r\n$3\r\njob\r\n";
    let mut got = vec![0u8; want.len()];
    waiter.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
    let n: i64 = redis::cmd("EXISTS").arg("q2").query(&mut k).unwrap();
    assert_eq!(n, 0);
    // And a blocked BZPOPMIN by a ZADD; a client pipelining behind it waits its turn.
    waiter.write_all(b"BZPOPMIN z2 0\r\nPING\r\n").unwrap();
    eventually("the BZPOPMIN to block", || {
        (info_field(&mut k, "clients", "blocked_clients").as_deref() == Some("1")).then_some(())
    });
    let _: i64 = redis::cmd("ZADD")
        .arg("z2")
        .arg(1.5)
        .arg("m")
        .query(&mut k)
        .unwrap();
    let want = b"*3\r\n$2\r\nz2\r\n$1\r\nm\r\n$3\r\n1.5\r\n+PONG\r\n";
    let mut got = vec![0u8; want.len()];
    waiter.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    // A key that turns into another type leaves the client blocked, as in Redis.
    waiter.write_all(b"BLPOP wt 0\r\n").unwrap();
    eventually("the BLPOP to block", || {
        (info_field(&mut k, "clients", "blocked_clients").as_deref() == Some("1")).then_some(())
    });
    let () = redis::pipe()
        .atomic()
        .cmd("LPUSH")
        .arg("wt")
        .arg("a")
        .ignore()
        .cmd("DEL")
        .arg("wt")
        .ignore()
        .cmd("SET")
        .arg("wt")
        .arg("foo")
        .ignore()
        .query(&mut k)
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg("wt").query(&mut k).unwrap();
    let _: i64 = redis::cmd("LPUSH")
        .arg("wt")
        .arg("b")
        .query(&mut k)
        .unwrap();
    let want = b"*2\r\n$2\r\nwt\r\n$1\r\nb\r\n";
    let mut got = vec![0u8; want.len()];
    waiter.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

#[test]
fn zset_algebra_matches_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nZADD a 1 x 2 y 3 z\r\nZADD b 10 y 20 z 30 w\r\nSADD s x w\r\n",
            "ZUNION 2 a b WITHSCORES\r\nZINTER 2 a b WITHSCORES\r\nZDIFF 2 a b WITHSCORES\r\nZUNION 3 a b s\r\n",
            "ZUNION 2 a b WEIGHTS 2 0.5 WITHSCORES\r\nZUNION 2 a b AGGREGATE MIN WITHSCORES\r\nZINTER 2 a b AGGREGATE MAX WITHSCORES\r\n",
            "ZUNIONSTORE d 2 a b\r\nZRANGE d 0 -1 WITHSCORES\r\nZINTERSTORE d 2 a b WEIGHTS 1 -1\r\nZRANGE d 0 -1 WITHSCORES\r\n",
            "ZDIFFSTORE d 2 a b\r\nZRANGE d 0 -1 WITHSCORES\r\nZINTERSTORE d 2 a nokey\r\nEXISTS d\r\nZINTERCARD 2 a b\r\nZINTERCARD 2 a b LIMIT 1\r\n",
            "ZADD inf +inf m\r\nZUNION 2 inf inf WEIGHTS 0 1 WITHSCORES\r\nZADD ninf -inf m\r\nZUNION 2 inf ninf WITHSCORES\r\n",
            "ZUNION 0 a\r\nZUNIONSTORE d 0 a\r\nZUNION 3 a b\r\nZUNION x a\r\nZUNION 2 a b WEIGHTS 1\r\nZUNION 2 a b WEIGHTS 1 x\r\n",
            "ZUNION 2 a b AGGREGATE AVG\r\nZDIFF 2 a b WEIGHTS 1 1\r\nZUNIONSTORE d 2 a b WITHSCORES\r\nZINTERCARD 0 a\r\nZINTERCARD 1 a LIMIT -1\r\n",
            "SET str v\r\nZUNION 2 a str\r\nZINTERSTORE d 1 str\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn multi_key_pops_match_redis_byte_for_byte() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "FLUSHALL\r\nRPUSH l a b c\r\nLMPOP 2 nokey l LEFT\r\nLMPOP 1 l RIGHT COUNT 5\r\nEXISTS l\r\nLMPOP 1 nokey LEFT\r\n",
            "LMPOP 0 l LEFT\r\nLMPOP x l LEFT\r\nLMPOP 2 l LEFT\r\nLMPOP 1 l UP\r\nLMPOP 1 l LEFT COUNT 0\r\nLMPOP 1 l LEFT COUNT 1 COUNT 2\r\n",
            "ZADD z 1 a 2 b 3 c\r\nZMPOP 1 z MIN\r\nZMPOP 2 nokey z MAX COUNT 10\r\nEXISTS z\r\nZMPOP 1 z MIN\r\nZMPOP 1 z SIDE\r\n",
            "RPUSH l2 x\r\nBLMPOP 0.05 1 l2 LEFT COUNT 2\r\nBLMPOP 0.05 1 l2 LEFT\r\nZADD z2 5 m\r\nBZMPOP 0.05 1 z2 MAX\r\nBZMPOP 0.05 1 z2 MAX\r\n",
            "BLMPOP -1 1 l LEFT\r\nSET str v\r\nLMPOP 1 str LEFT\r\nZMPOP 1 str MIN\r\nMULTI\r\nBLMPOP 0 1 nokey LEFT\r\nEXEC\r\n",
            "ECHO __END__\r\n"
        ),
    );
}

#[test]
fn dump_payloads_restore_both_ways_with_redis() {
    if skip() {
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    let mut r = client(redis.addr);
    let mut k = client(kv);
    fill(&mut r, "r");
    fill(&mut k, "k");
    // Each side's payloads restored on the other, keeping the TTL.
    for (from_addr, to_addr) in [(redis.addr, kv), (kv, redis.addr)] {
        let (from, to) = (&mut client(from_addr), &mut client(to_addr));
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(from).unwrap();
        for key in keys
            .iter()
            .filter(|k| k.starts_with(if from_addr == kv { "k:" } else { "r:" }))
        {
            let p: Vec<u8> = redis::cmd("DUMP").arg(key).query(from).unwrap();
            let pttl: i64 = redis::cmd("PTTL").arg(key).query(from).unwrap();
            let () = redis::cmd("RESTORE")
                .arg(key)
                .arg(pttl.max(0))
                .arg(p)
                .arg("REPLACE")
                .query(to)
                .unwrap();
        }
    }
    assert_eq!(contents(&mut k), contents(&mut r));
    assert_eq!(contents(&mut k).len(), 24);
    // Errors in Redis's words.
    same_bytes(
        redis.addr,
        kv,
        concat!(
            "SET s v\r\nRESTORE s 0 x\r\nRESTORE n 0 x\r\nRESTORE n -1 x\r\nRESTORE n 0 x IDLETIME -1\r\nRESTORE n 0 x FREQ 300\r\nRESTORE n 0 x BOGUS\r\nDUMP nokey\r\n",
            "ECHO __END__\r\n"
        ),
    );
}
