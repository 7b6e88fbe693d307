//! kv's administrative commands: CLIENT LIST / KILL with filters (what Redis
//! Sentinel sends after a failover), CONFIG SET / GET / REWRITE, DEBUG RELOAD,
//! TIME. Talks raw RESP to the real lb binary.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{eventually, Lb};

fn start_kv() -> (Lb, SocketAddr) {
    let lb = Lb::start("kv main\n    bind 127.0.0.1:0\n", 1);
    let a = lb.addr("kv", "main");
    (lb, a)
}

/// A connection sending inline commands and reading until a marker reply.
struct Conn(std::net::TcpStream);

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        let s = common::connect(addr);
        s.set_read_timeout(Some(common::WAIT)).unwrap();
        Conn(s)
    }

    /// Runs `script` then `ECHO __END__`; every reply byte before the marker.
    fn run(&mut self, script: &str) -> String {
        self.0
            .write_all(format!("{script}ECHO __END__\r\n").as_bytes())
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.ends_with(b"$7\r\n__END__\r\n") {
            let n = self.0.read(&mut b).unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        got.truncate(got.len() - b"$7\r\n__END__\r\n".len());
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Whether the server closed this connection (within the wait limit).
    fn closed(&mut self) -> bool {
        let deadline = Instant::now() + common::WAIT;
        let mut b = [0u8; 64];
        while Instant::now() < deadline {
            match self.0.read(&mut b) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        false
    }
}

fn id_of(c: &mut Conn) -> u64 {
    let r = c.run("CLIENT ID\r\n");
    r.trim_start_matches(':').trim().parse().unwrap()
}

#[test]
fn client_list_and_kill_filters_work_as_sentinel_uses_them() {
    let (_lb, kv) = start_kv();
    let mut me = Conn::new(kv);
    let mut other = Conn::new(kv);
    let mut sub = Conn::new(kv);
    let other_id = id_of(&mut other);
    let my_id = id_of(&mut me);
    other.run("CLIENT SETNAME worker\r\n");
    sub.0.write_all(b"SUBSCRIBE news\r\n").unwrap();
    eventually("the subscriber to show in CLIENT LIST", || {
        let l = me.run("CLIENT LIST TYPE pubsub\r\n");
        l.contains("sub=1").then_some(())
    });

    let list = me.run("CLIENT LIST\r\n");
    assert!(list.contains(&format!("id={other_id} ")), "{list}");
    assert!(list.contains("name=worker"), "{list}");
    let mine = list
        .lines()
        .find(|l| l.contains(&format!("id={my_id} ")))
        .unwrap();
    assert!(mine.contains("cmd=client|list"), "{mine}");
    assert!(mine.contains(" flags=N db=0 "), "{mine}");
    let only = me.run(&format!("CLIENT LIST ID {other_id}\r\n"));
    assert_eq!(only.matches("id=").count(), 1, "{only}");
    assert_eq!(
        me.run("CLIENT LIST TYPE bogus\r\nCLIENT LIST ID x\r\n"),
        "-ERR Unknown client type 'bogus'\r\n-ERR Invalid client ID\r\n"
    );
    assert!(me.run("CLIENT INFO\r\n").contains("cmd=client|info"));

    // Bad filters are refused in Redis's words.
    assert_eq!(
        me.run("CLIENT KILL ID 0\r\nCLIENT KILL TYPE x\r\nCLIENT KILL USER bob\r\nCLIENT KILL SKIPME maybe\r\nCLIENT KILL ID\r\nCLIENT KILL 1.2.3.4:5\r\n"),
        "-ERR client-id should be greater than 0\r\n-ERR Unknown client type 'x'\r\n-ERR No such user 'bob'\r\n-ERR syntax error\r\n-ERR No such client\r\n-ERR No such client\r\n"
    );
    // What Sentinel sends after a failover: every normal client but itself.
    assert_eq!(me.run("CLIENT KILL TYPE normal\r\n"), ":1\r\n");
    assert!(other.closed());
    assert_eq!(me.run("PING\r\n"), "+PONG\r\n");
    // By type pubsub, then by ID with SKIPME no (itself, after the reply).
    assert_eq!(me.run("CLIENT KILL TYPE pubsub USER default\r\n"), ":1\r\n");
    assert!(sub.closed());
    assert_eq!(
        me.run(&format!("CLIENT KILL ID {my_id} SKIPME no\r\n")),
        ":1\r\n"
    );
    assert!(me.closed());
    // The old form by address.
    let mut a = Conn::new(kv);
    let mut b = Conn::new(kv);
    let b_id = id_of(&mut b);
    let list = a.run("CLIENT LIST\r\n");
    let addr = list
        .lines()
        .find(|l| l.contains(&format!("id={b_id} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .unwrap()
        .to_string();
    assert_eq!(a.run(&format!("CLIENT KILL {addr}\r\n")), "+OK\r\n");
    assert!(b.closed());
}

#[test]
fn config_set_get_and_rewrite() {
    let (lb, kv) = start_kv();
    let mut c = Conn::new(kv);
    assert_eq!(
        c.run("CONFIG SET maxmemory 1kb hash-max-ziplist-entries 2\r\nCONFIG GET maxmemory\r\nCONFIG GET hash-max-listpack-entries\r\n"),
        "+OK\r\n*2\r\n$9\r\nmaxmemory\r\n$4\r\n1024\r\n*2\r\n$25\r\nhash-max-listpack-entries\r\n$1\r\n2\r\n"
    );
    // The new thresholds apply at once.
    assert_eq!(
        c.run("HSET h a 1 b 2\r\nOBJECT ENCODING h\r\nHSET h c 3\r\nOBJECT ENCODING h\r\n"),
        ":2\r\n$8\r\nlistpack\r\n:1\r\n$9\r\nhashtable\r\n"
    );
    // maxmemory too: a big write is refused.
    let big = "x".repeat(2000);
    assert_eq!(
        c.run(&format!("SET big {big}\r\n")),
        "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    );
    assert_eq!(
        c.run("CONFIG SET maxmemory 0\r\nCONFIG SET nosuch 1\r\nCONFIG SET appendonly yes\r\nCONFIG SET maxmemory-policy allkeys-lru\r\nCONFIG SET maxmemory x\r\nCONFIG SET maxmemory\r\n"),
        concat!(
            "+OK\r\n",
            "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n",
            "-ERR CONFIG SET failed (possibly related to argument 'appendonly') - can't set immutable config (kv: set it in lb.conf)\r\n",
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - kv supports only 'noeviction'\r\n",
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n",
            "-ERR wrong number of arguments for 'config|set' command\r\n",
        )
    );
    // Sentinel's post-failover CONFIG REWRITE succeeds, and the log says nothing was written.
    assert_eq!(c.run("CONFIG REWRITE\r\n"), "+OK\r\n");
    lb.wait_log("CONFIG REWRITE: nothing rewritten");
    // Inside a transaction too, as Sentinel sends it.
    assert_eq!(
        c.run("MULTI\r\nCLIENT KILL TYPE normal\r\nCONFIG REWRITE\r\nEXEC\r\n"),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:0\r\n+OK\r\n"
    );
}

#[test]
fn debug_reload_keeps_every_type_and_time_answers() {
    let (_lb, kv) = start_kv();
    let mut c = Conn::new(kv);
    let before =
        c.run("HSET h f v\r\nRPUSH l a b\r\nSADD s 1 2\r\nZADD z 1.5 m\r\nSET k v PX 100000\r\n");
    assert_eq!(before, ":1\r\n:2\r\n:2\r\n:1\r\n+OK\r\n");
    let dump = "HGETALL h\r\nLRANGE l 0 -1\r\nSMEMBERS s\r\nZRANGE z 0 -1 WITHSCORES\r\nGET k\r\n";
    let want = c.run(dump);
    assert_eq!(c.run("DEBUG RELOAD\r\n"), "+OK\r\n");
    assert_eq!(c.run(dump), want);
    let ttl = c.run("PTTL k\r\n");
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 100000, "{ttl}");
    assert_eq!(
        c.run("DEBUG SET-ACTIVE-EXPIRE 0\r\nDEBUG SET-ACTIVE-EXPIRE 1\r\nDEBUG NOPE\r\n"),
        "+OK\r\n+OK\r\n-ERR unknown subcommand 'NOPE'. Try DEBUG HELP.\r\n"
    );
    let t = c.run("TIME\r\n");
    let parts: Vec<&str> = t.split("\r\n").collect();
    assert_eq!(parts[0], "*2", "{t}");
    let secs: u64 = parts[2].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    assert!(secs.abs_diff(now) < 60, "{secs} vs {now}");
}

#[test]
fn monitor_shows_every_command_with_its_database_and_client() {
    let (_lb, kv) = start_kv();
    let mut mon = Conn::new(kv);
    mon.0.write_all(b"MONITOR\r\n").unwrap();
    let mut ok = [0u8; 5];
    mon.0.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let mut c = Conn::new(kv);
    c.run("SET k \"a b\"\r\nSELECT 3\r\nGET k\r\nCONFIG GET hz\r\n");
    let mut got = String::new();
    let mut b = [0u8; 4096];
    while !got.contains("\"ECHO\" \"__END__\"\r\n") {
        let n = mon.0.read(&mut b).unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 4, "{got}");
    assert!(
        lines[0].starts_with('+') && lines[0].contains(" [0 127.0.0.1:"),
        "{got}"
    );
    assert!(lines[0].ends_with("] \"SET\" \"k\" \"a b\""), "{got}");
    assert!(lines[1].ends_with("] \"SELECT\" \"3\""), "{got}");
    assert!(
        lines[2].contains(" [3 127.0.0.1:") && lines[2].ends_with("\"GET\" \"k\""),
        "{got}"
    );
    // CONFIG (admin) is not shown, as in Redis.
    assert!(lines[3].ends_with("\"ECHO\" \"__END__\""), "{got}");
}
