//! kv against a real Redis 7 (Debian's redis-server): RDB replication both ways,
//! persistence after kill -9, transactions through redis-py. Each test skips with
//! a notice when the tool it needs is missing (`.ci/run` installs them).

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::redis_server::{client, have, have_redis_py, Redis};
use common::{eventually, Lb, TempDir};

fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap()
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn start_kv(extra: &str) -> (Lb, SocketAddr) {
    let lb = Lb::start(&format!("kv main\n    bind 127.0.0.1:0\n{extra}"), 1);
    let a = lb.addr("kv", "main");
    (lb, a)
}

#[test]
fn a_redis_replica_of_kv_loads_every_key_with_its_ttl() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    let (_lb, kv) = start_kv("");
    let mut k = client(kv);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value-{i}"))
            .ignore();
    }
    pipe.cmd("SET")
        .arg("ttl")
        .arg("12345")
        .arg("EX")
        .arg(1000)
        .ignore();
    let () = pipe.query(&mut k).unwrap();

    let replica = Redis::start(&["--replicaof", "127.0.0.1", &kv.port().to_string()]);
    let mut r = client(replica.addr);
    eventually("the Redis replica to load kv's RDB", || {
        let i = info(&mut r, "replication");
        (field(&i, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    let n: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
    assert_eq!(n, 2001, "redis log:\n{}", replica.log());
    let v: String = redis::cmd("GET").arg("key:1999").query(&mut r).unwrap();
    assert_eq!(v, "value-1999");
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut r).unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let v: String = redis::cmd("GET").arg("ttl").query(&mut r).unwrap();
    assert_eq!(v, "12345");

    // Then the stream: a new write on kv reaches the Redis replica.
    let () = redis::cmd("SET")
        .arg("after")
        .arg("sync")
        .query(&mut k)
        .unwrap();
    eventually("the streamed write on the Redis replica", || {
        redis::cmd("GET")
            .arg("after")
            .query::<Option<String>>(&mut r)
            .ok()
            .flatten()
    });
    // Its ACKs reach kv: WAIT counts it.
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut k).unwrap();
    assert_eq!(acked, 1);
}

#[test]
fn kv_replicates_from_a_redis_primary_then_follows_its_stream() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
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
        let mut pipe = redis::pipe();
        for i in 0..999 {
            // Values of every RDB string encoding: ints, short, long compressible (LZF).
            let v = match i % 3 {
                0 => i.to_string(),
                1 => format!("v{i}"),
                _ => "x".repeat(100 + i),
            };
            pipe.cmd("SET").arg(format!("k{i}")).arg(v).ignore();
        }
        pipe.cmd("SET")
            .arg("ttl")
            .arg("v")
            .arg("EX")
            .arg(1000)
            .ignore();
        let () = pipe.query(&mut p).unwrap();

        let (lb, kv) = start_kv(&format!("    replicaof {}\n", primary.addr));
        let mut k = client(kv);
        eventually("kv to load Redis's RDB", || {
            let n: i64 = redis::cmd("DBSIZE").query(&mut k).ok()?;
            (n == 1000).then_some(())
        });
        let v: String = redis::cmd("GET").arg("k998").query(&mut k).unwrap();
        assert_eq!(v, "x".repeat(1098));
        let v: String = redis::cmd("GET").arg("k3").query(&mut k).unwrap();
        assert_eq!(v, "3");
        let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut k).unwrap();
        assert!((990..=1000).contains(&ttl), "ttl {ttl}");

        let () = redis::cmd("SET")
            .arg("new")
            .arg("write")
            .query(&mut p)
            .unwrap();
        eventually("the streamed write on kv", || {
            redis::cmd("GET")
                .arg("new")
                .query::<Option<String>>(&mut k)
                .ok()
                .flatten()
        });
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut p).unwrap();
        assert_eq!(acked, 1, "diskless {diskless}");

        // A command kv does not implement: the replica says it diverged.
        let _: i64 = redis::cmd("PFADD")
            .arg("hll")
            .arg("a")
            .query(&mut p)
            .unwrap();
        eventually("kv to report the divergence", || {
            let i = info(&mut k, "replication");
            (field(&i, "kv_diverged").as_deref() == Some("1")).then_some(i)
        });
        lb.wait_log("diverged");
    }
}

fn kv_conf(data: &std::path::Path, extra: &str) -> String {
    format!(
        "kv main\n    bind 127.0.0.1:0\n    dir {}\n{extra}",
        data.display()
    )
}

#[test]
fn appendfsync_always_keeps_every_acknowledged_incr_across_kill_9() {
    let data = TempDir::new("kv-aof");
    let conf = kv_conf(data.path(), "    appendonly yes\n    appendfsync always\n");
    let mut lb = Lb::start(&conf, 1);
    let kv = lb.addr("kv", "main");
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut c = client(kv);
                // Until the server dies: each Ok is an acknowledged INCR.
                while redis::cmd("INCR").arg("n").query::<i64>(&mut c).is_ok() {
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    eventually("3,000 acknowledged INCRs", || {
        (acked.load(std::sync::atomic::Ordering::SeqCst) >= 3000).then_some(())
    });
    lb.child.kill().unwrap(); // SIGKILL: no chance to flush anything
    let _ = lb.child.wait();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    drop(lb);

    let lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    let n: i64 = redis::cmd("GET").arg("n").query(&mut c).unwrap();
    // Every acknowledged INCR is there; at most the 3 in flight at the kill too.
    assert!(
        n as u64 >= acked && n as u64 <= acked + 3,
        "acked {acked}, found {n}"
    );
}

#[test]
fn a_torn_last_aof_record_is_cut_with_a_warning() {
    let data = TempDir::new("kv-aof-torn");
    let conf = kv_conf(data.path(), "    appendonly yes\n");
    let mut aof = Vec::new();
    for cmd in [
        &["SET", "a", "1"][..],
        &["INCR", "a"],
        &["MULTI"],
        &["SET", "b", "2"],
        &["EXEC"],
    ] {
        aof.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
        for a in cmd {
            aof.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    let good = aof.len();
    aof.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$5\r\nab"); // torn
    let path = data.path().join("appendonly.aof");
    std::fs::write(&path, &aof).unwrap();
    let lb = Lb::start(&conf, 1);
    lb.wait_log("truncating");
    let mut c = client(lb.addr("kv", "main"));
    let v: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![Some("2".into()), Some("2".into()), None]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
    // Writes after the cut append to a well-formed file.
    let () = redis::cmd("SET").arg("d").arg("4").query(&mut c).unwrap();
    drop(lb);
    let lb = Lb::start(&conf, 1);
    let mut c = client(lb.addr("kv", "main"));
    let v: Option<String> = redis::cmd("GET").arg("d").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("4"));
}

#[test]
fn dump_rdb_goes_both_ways_with_redis() {
    if !have("redis-server") || !have("redis-check-rdb") {
        eprintln!(
            "SKIPPED: redis-server / redis-check-rdb not installed (apt-get install redis-server)"
        );
        return;
    }
    // kv writes dump.rdb: redis-check-rdb accepts it, redis-server loads it.
    let data = TempDir::new("kv-rdb");
    let lb = Lb::start(&kv_conf(data.path(), ""), 1);
    let mut c = client(lb.addr("kv", "main"));
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i * 1000).ignore();
    }
    pipe.cmd("SET")
        .arg("ttl")
        .arg("v")
        .arg("EX")
        .arg(500)
        .ignore();
    let () = pipe.query(&mut c).unwrap();
    let () = redis::cmd("SAVE").query(&mut c).unwrap();
    let rdb = data.path().join("dump.rdb");
    let check = Command::new("redis-check-rdb").arg(&rdb).output().unwrap();
    assert!(
        check.status.success(),
        "redis-check-rdb: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let started = Redis::start(&[
        "--dir",
        data.path().to_str().unwrap(),
        "--dbfilename",
        "dump.rdb",
    ]);
    let mut r = client(started.addr);
    let n: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
    assert_eq!(n, 501);
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut r).unwrap();
    assert!((490..=500).contains(&ttl), "ttl {ttl}");
    // BGSAVE too, with writes going on.
    let () = redis::cmd("SET")
        .arg("more")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let s: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(s, "Background saving started");
    eventually("BGSAVE to finish", || {
        let i = info(&mut c, "persistence");
        (field(&i, "rdb_bgsave_in_progress").as_deref() == Some("0")
            && field(&i, "rdb_changes_since_last_save").as_deref() == Some("0"))
        .then_some(())
    });
    drop(started);
    drop(lb);

    // kv loads Redis's own dump.rdb at start.
    let rdir = TempDir::new("redis-rdb");
    let redis = Redis::start(&["--dir", rdir.path().to_str().unwrap()]);
    let mut r = client(redis.addr);
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET")
            .arg(format!("r{i}"))
            .arg("y".repeat(i))
            .ignore();
    }
    pipe.cmd("SET").arg("int").arg(123456).ignore();
    let () = pipe.query(&mut r).unwrap();
    let () = redis::cmd("SAVE").query(&mut r).unwrap();
    std::fs::copy(rdir.path().join("dump.rdb"), data.path().join("dump.rdb")).unwrap();
    let lb = Lb::start(&kv_conf(data.path(), ""), 1);
    let mut c = client(lb.addr("kv", "main"));
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 301);
    let v: String = redis::cmd("GET").arg("r299").query(&mut c).unwrap();
    assert_eq!(v, "y".repeat(299));
}

/// Sends raw RESP and reads until `want` bytes came back.
fn raw(addr: SocketAddr, req: &[u8], want: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = common::connect(addr);
    s.write_all(req).unwrap();
    let mut out = vec![0u8; want];
    s.read_exact(&mut out).unwrap();
    out
}

#[test]
fn multi_exec_replies_byte_for_byte_and_replicates_as_one_unit() {
    let (_lb, kv) = start_kv("");
    let req = b"MULTI\r\nSET a 1\r\nINCR a\r\nGET a\r\nEXEC\r\n";
    let want = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n";
    assert_eq!(
        String::from_utf8_lossy(&raw(kv, req, want.len())),
        String::from_utf8_lossy(want)
    );
    // A queueing error dooms the transaction; an error at run time does not.
    let req =
        b"MULTI\r\nSET b 1\r\nNOSUCH x\r\nEXEC\r\nGET b\r\nMULTI\r\nSET c x\r\nINCR c\r\nEXEC\r\n";
    let want = b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n";
    assert_eq!(
        String::from_utf8_lossy(&raw(kv, req, want.len())),
        String::from_utf8_lossy(want)
    );
    let req = b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nWATCH a\r\nDISCARD\r\n";
    let want = b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n+OK\r\n";
    assert_eq!(
        String::from_utf8_lossy(&raw(kv, req, want.len())),
        String::from_utf8_lossy(want)
    );
    // WATCH: a key touched by another client aborts EXEC with a nil array.
    use std::io::{Read, Write};
    let mut w = common::connect(kv);
    w.write_all(b"WATCH a\r\n").unwrap();
    let mut ok = [0u8; 5];
    w.read_exact(&mut ok).unwrap();
    let mut other = client(kv);
    let () = redis::cmd("SET")
        .arg("a")
        .arg("other")
        .query(&mut other)
        .unwrap();
    w.write_all(b"MULTI\r\nSET a mine\r\nEXEC\r\nGET a\r\n")
        .unwrap();
    let want = b"+OK\r\n+QUEUED\r\n*-1\r\n$5\r\nother\r\n";
    let mut got = vec![0u8; want.len()];
    w.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));

    if !have("redis-server") {
        eprintln!("SKIPPED (replication part): redis-server not installed");
        return;
    }
    // The stream carries the transaction as MULTI ... EXEC: a Redis replica applies it.
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &kv.port().to_string()]);
    let mut r = client(replica.addr);
    eventually("the Redis replica to sync", || {
        let i = info(&mut r, "replication");
        (field(&i, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    let mut k = client(kv);
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("t")
        .arg(5)
        .cmd("INCRBY")
        .arg("t")
        .arg(6)
        .query(&mut k)
        .unwrap();
    assert_eq!((x, y), (5, 11));
    eventually("the transaction on the Redis replica", || {
        let v: Option<String> = redis::cmd("GET").arg("t").query(&mut r).ok()?;
        (v.as_deref() == Some("11")).then_some(())
    });
}

#[test]
fn redis_py_pipelines_are_transactions_and_watch_aborts() {
    if !have_redis_py() {
        eprintln!("SKIPPED: redis-py not installed (pip install redis)");
        return;
    }
    let (_lb, kv) = start_kv("");
    let script = r#"
import sys, redis
port = int(sys.argv[1])
r = redis.Redis(port=port)
other = redis.Redis(port=port)
p = r.pipeline()  # transaction=True: MULTI ... EXEC
p.set("a", 1).incr("a").get("a").incrby("a", 5)
res = p.execute()
assert res == [True, 2, b"2", 7], res
r.set("w", 1)
with r.pipeline() as p:
    p.watch("w")
    v = int(p.get("w"))
    other.set("w", 100)
    p.multi()
    p.set("w", v + 1)
    try:
        p.execute()
        sys.exit("EXEC ran although the WATCHed key was touched")
    except redis.WatchError:
        pass
assert r.get("w") == b"100", r.get("w")
with r.pipeline() as p:
    p.watch("w")
    v = int(p.get("w"))
    p.multi()
    p.set("w", v + 1)
    assert p.execute() == [True]
assert r.get("w") == b"101"
def incr(pipe):
    v = int(pipe.get("w"))
    pipe.multi()
    pipe.set("w", v + 1)
assert r.transaction(incr, "w") == [True]
assert r.get("w") == b"102"
p = r.pipeline()
p.set("x", 1)
p.execute_command("NOSUCH")
try:
    p.execute()
    sys.exit("a queueing error did not abort the transaction")
except redis.ResponseError:
    pass
assert r.get("x") is None
print("ok")
"#;
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script, &kv.port().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "redis-py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw connection that reads until a `__END__` marker reply.
struct Raw(std::net::TcpStream);

impl Raw {
    fn new(addr: SocketAddr) -> Raw {
        Raw(common::connect(addr))
    }

    /// Sends `script` (inline commands) and returns every reply byte up to and
    /// including the reply that carries `__END__` (the script's last command).
    fn run(&mut self, script: &str) -> String {
        use std::io::{Read, Write};
        self.0.write_all(script.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.ends_with(b"__END__\r\n") {
            let n = self.0.read(&mut b).unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

#[test]
fn pubsub_replies_match_redis_byte_for_byte() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    let mut results = Vec::new();
    for addr in [redis.addr, kv] {
        let mut sub = Raw::new(addr);
        let mut publ = Raw::new(addr);
        let t = vec![
            sub.run("SUBSCRIBE news other\r\nPSUBSCRIBE n*\r\nPING\r\nGET x\r\nPING __END__\r\n"),
            publ.run("PUBLISH news hi\r\nPUBLISH nothing x\r\nPUBSUB NUMSUB news nothing\r\nPUBSUB NUMPAT\r\nPUBSUB CHANNELS o*\r\nECHO __END__\r\n"),
            publ.run("PUBLISH other bye\r\nECHO __END__\r\n"),
            sub.run("UNSUBSCRIBE news\r\nUNSUBSCRIBE other\r\nPUNSUBSCRIBE n*\r\nUNSUBSCRIBE\r\nPING __END__\r\n"),
            publ.run("HELLO 2 SETNAME x\r\nHELLO 1\r\nHELLO x\r\nCLIENT GETNAME\r\nECHO __END__\r\n"),
        ];
        results.push(t);
    }
    // HELLO's id and version differ by nature: compare the rest.
    let norm = |s: &str| {
        s.split("\r\n")
            .collect::<Vec<_>>()
            .join("|")
            .replace("$6|7.0.15|", "$V|VER|")
    };
    for (r, k) in results[0].iter().zip(&results[1]) {
        let (r, k) = (norm(r), norm(k));
        let strip_id = |s: &str| {
            let mut v: Vec<String> = s.split('|').map(String::from).collect();
            if let Some(i) = v.iter().position(|x| x == "id") {
                v[i + 1] = ":ID".into();
            }
            v.join("|")
        };
        assert_eq!(strip_id(&k), strip_id(&r));
    }
}

#[test]
fn string_and_key_commands_match_redis_byte_for_byte() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    let redis = Redis::start(&[]);
    let (_lb, kv) = start_kv("");
    let script = concat!(
        "FLUSHALL\r\n",
        "SET f 10.5\r\nINCRBYFLOAT f 0.1\r\nINCRBYFLOAT f -5e0\r\nINCRBYFLOAT nf 3\r\nINCRBYFLOAT f abc\r\n",
        "SET s hello\r\nINCRBYFLOAT s 1\r\nSETRANGE s 1 ipp\r\nGET s\r\nSETRANGE s 8 x\r\nGET s\r\n",
        "SETRANGE s -1 x\r\nSETRANGE new 0 \"\"\r\nEXISTS new\r\nSETRANGE new2 2 ab\r\nGET new2\r\n",
        "SET r \"Hello World\"\r\nGETRANGE r 0 4\r\nGETRANGE r -5 -1\r\nGETRANGE r 5 2\r\nGETRANGE r -1 -5\r\n",
        "GETRANGE r 0 -100\r\nGETRANGE r 0 1000\r\nGETRANGE nokey 0 1\r\nSUBSTR r 0 2\r\nGETRANGE r x 1\r\n",
        "MSETNX a 1 b 2\r\nMSETNX b 3 c 4\r\nMGET a b c\r\nMSETNX a\r\n",
        "RENAME a a2\r\nGET a2\r\nRENAME nokey x\r\nRENAMENX a2 b\r\nRENAMENX a2 a3\r\nRENAME a3 a3\r\nRENAMENX b b\r\n",
        "SET t v EX 100\r\nCOPY t t2\r\nTTL t2\r\nCOPY t t2\r\nCOPY t t2 REPLACE\r\nCOPY t t\r\nCOPY nokey z\r\nCOPY t t3 DB 0\r\nCOPY t t3 BAD\r\n",
        "TOUCH t t2 nokey\r\nEXPIREAT t 4102444800\r\nEXPIRETIME t\r\nPEXPIRETIME t\r\nEXPIRETIME b\r\nEXPIRETIME nokey\r\n",
        "SET g val\r\nGETEX g\r\nGETEX g PX 100000\r\nPTTL g\r\nGETEX g PERSIST\r\nTTL g\r\nGETEX g EX -1\r\nGETEX g EX 1 PX 1\r\nGETEX g FOO\r\nGETEX nokey\r\n",
        "GETEX g EXAT 1\r\nEXISTS g\r\n",
        "SET i 12345\r\nSET e short\r\nSET raw 012345678901234567890123456789012345678901234567890\r\n",
        "OBJECT ENCODING i\r\nOBJECT ENCODING e\r\nOBJECT ENCODING raw\r\nOBJECT ENCODING nokey\r\nOBJECT REFCOUNT i\r\n",
        "FLUSHALL\r\nRANDOMKEY\r\nSET only 1\r\nRANDOMKEY\r\nOBJECT FOO bar\r\n",
        "ECHO __END__\r\n"
    );
    let r = Raw::new(redis.addr).run(script);
    let k = Raw::new(kv).run(script);
    let (r, k): (Vec<&str>, Vec<&str>) = (r.split("\r\n").collect(), k.split("\r\n").collect());
    for (i, (a, b)) in r.iter().zip(&k).enumerate() {
        assert_eq!(b, a, "line {i}: kv {:?} redis {:?}", &k[..=i], &r[..=i]);
    }
    assert_eq!(r.len(), k.len());
}
