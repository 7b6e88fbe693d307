//! The command table (names, arity, flags) and the keyspace commands, executed under the state lock.

use super::db::{Entry, Value};
use super::frame::{fmt_i64, parse_i64, reply, Argv};
use super::{Kv, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Get,
    Set,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    Ping,
    MGet,
    MSet,
    Del,
    Unlink,
    Exists,
    SetNx,
    SetEx,
    PSetEx,
    GetDel,
    GetSet,
    Append,
    StrLen,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    Persist,
    Type,
    Keys,
    Scan,
    DbSize,
    FlushDb,
    FlushAll,
    Echo,
    Quit,
    Select,
    Auth,
    Hello,
    Client,
    Command,
    Config,
    Info,
    Role,
    ReplicaOf,
    SlaveOf,
    Wait,
    ReplConf,
    Psync,
    Sync,
    Save,
    BgSave,
    BgRewriteAof,
    LastSave,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Subscribe,
    PSubscribe,
    Unsubscribe,
    PUnsubscribe,
    Publish,
    PubSub,
    Function,
    GetEx,
    IncrByFloat,
    SetRange,
    GetRange,
    Substr,
    MSetNx,
    Rename,
    RenameNx,
    Copy,
    Touch,
    ExpireTime,
    PExpireTime,
    RandomKey,
    Object,
    Memory,
    Debug,
    Time,
    SwapDb,
    Move,
    Monitor,
    BLPop,
    BRPop,
    BLMove,
    BRPopLPush,
    BZPopMin,
    BZPopMax,
    ZUnion,
    ZInter,
    ZDiff,
    ZUnionStore,
    ZInterStore,
    ZDiffStore,
    ZInterCard,
    LMPop,
    BLMPop,
    ZMPop,
    BZMPop,
    Dump,
    Restore,
    HSet,
    HSetNx,
    HGet,
    HMGet,
    HMSet,
    HDel,
    HGetAll,
    HKeys,
    HVals,
    HLen,
    HExists,
    HIncrBy,
    HIncrByFloat,
    HStrLen,
    HRandField,
    HScan,
    LPush,
    RPush,
    LPushX,
    RPushX,
    LPop,
    RPop,
    LLen,
    LRange,
    LIndex,
    LSet,
    LRem,
    LTrim,
    LInsert,
    LPos,
    LMove,
    RPopLPush,
    SAdd,
    SRem,
    SMembers,
    SIsMember,
    SMIsMember,
    SCard,
    SPop,
    SRandMember,
    SInter,
    SUnion,
    SDiff,
    SInterStore,
    SUnionStore,
    SDiffStore,
    SMove,
    SScan,
    SInterCard,
    ZAdd,
    ZRem,
    ZScore,
    ZMScore,
    ZIncrBy,
    ZCard,
    ZCount,
    ZLexCount,
    ZRange,
    ZRangeByScore,
    ZRevRangeByScore,
    ZRangeByLex,
    ZRevRangeByLex,
    ZRevRange,
    ZRank,
    ZRevRank,
    ZPopMin,
    ZPopMax,
    ZRemRangeByRank,
    ZRemRangeByScore,
    ZRemRangeByLex,
    ZScan,
    ZRangeStore,
    ZRandMember,
}

/// Changes the keyspace: refused on a replica, propagated to replicas.
pub const WRITE: u8 = 1;
/// May grow memory: refused past `maxmemory`.
pub const DENYOOM: u8 = 2;
/// Allowed before AUTH.
pub const NOAUTH: u8 = 4;
/// Needs no keyspace lock (connection-level).
pub const LOCAL: u8 = 8;
/// Reads the keyspace only.
pub const READONLY: u8 = 16;
/// Administrative (replication, config).
pub const ADMIN: u8 = 32;
/// Its key (argument 1) must hold a string or nothing: WRONGTYPE otherwise.
pub const STR: u8 = 64;

pub struct Spec {
    /// Lowercase, as Redis names it in errors.
    pub name: &'static str,
    pub cmd: Cmd,
    /// Redis convention: N = exactly N arguments (with the name), -N = at least N.
    pub arity: i32,
    pub flags: u8,
    /// First key, last key (-1 = last argument), step, for COMMAND.
    pub keys: (i8, i8, i8),
}

impl Spec {
    pub fn is(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let n = argc as i64;
        let a = self.arity as i64;
        if a >= 0 {
            n == a
        } else {
            n >= -a
        }
    }
}

const fn spec(name: &'static str, cmd: Cmd, arity: i32, flags: u8, keys: (i8, i8, i8)) -> Spec {
    Spec {
        name,
        cmd,
        arity,
        flags,
        keys,
    }
}

const NOKEY: (i8, i8, i8) = (0, 0, 0);
const KEY1: (i8, i8, i8) = (1, 1, 1);
const KEYS: (i8, i8, i8) = (1, -1, 1);

/// Every supported command; the hottest first because lookup is a linear scan.
pub static TABLE: &[Spec] = &[
    spec("get", Cmd::Get, 2, READONLY | STR, KEY1),
    spec("set", Cmd::Set, -3, WRITE | DENYOOM, KEY1),
    spec("incr", Cmd::Incr, 2, WRITE | DENYOOM | STR, KEY1),
    spec("ping", Cmd::Ping, -1, LOCAL, NOKEY),
    spec("mget", Cmd::MGet, -2, READONLY, KEYS),
    spec("mset", Cmd::MSet, -3, WRITE | DENYOOM, (1, -1, 2)),
    spec("decr", Cmd::Decr, 2, WRITE | DENYOOM | STR, KEY1),
    spec("incrby", Cmd::IncrBy, 3, WRITE | DENYOOM | STR, KEY1),
    spec("decrby", Cmd::DecrBy, 3, WRITE | DENYOOM | STR, KEY1),
    spec("del", Cmd::Del, -2, WRITE, KEYS),
    spec("unlink", Cmd::Unlink, -2, WRITE, KEYS),
    spec("exists", Cmd::Exists, -2, READONLY, KEYS),
    spec("setnx", Cmd::SetNx, 3, WRITE | DENYOOM, KEY1),
    spec("setex", Cmd::SetEx, 4, WRITE | DENYOOM, KEY1),
    spec("psetex", Cmd::PSetEx, 4, WRITE | DENYOOM, KEY1),
    spec("getdel", Cmd::GetDel, 2, WRITE | STR, KEY1),
    spec("getset", Cmd::GetSet, 3, WRITE | DENYOOM | STR, KEY1),
    spec("append", Cmd::Append, 3, WRITE | DENYOOM | STR, KEY1),
    spec("strlen", Cmd::StrLen, 2, READONLY | STR, KEY1),
    spec("expire", Cmd::Expire, -3, WRITE, KEY1),
    spec("pexpire", Cmd::PExpire, -3, WRITE, KEY1),
    spec("expireat", Cmd::ExpireAt, -3, WRITE, KEY1),
    spec("pexpireat", Cmd::PExpireAt, -3, WRITE, KEY1),
    spec("ttl", Cmd::Ttl, 2, READONLY, KEY1),
    spec("pttl", Cmd::PTtl, 2, READONLY, KEY1),
    spec("persist", Cmd::Persist, 2, WRITE, KEY1),
    spec("type", Cmd::Type, 2, READONLY, KEY1),
    spec("keys", Cmd::Keys, 2, READONLY, NOKEY),
    spec("scan", Cmd::Scan, -2, READONLY, NOKEY),
    spec("dbsize", Cmd::DbSize, 1, READONLY, NOKEY),
    spec("flushdb", Cmd::FlushDb, -1, WRITE, NOKEY),
    spec("flushall", Cmd::FlushAll, -1, WRITE, NOKEY),
    spec("echo", Cmd::Echo, 2, LOCAL, NOKEY),
    spec("quit", Cmd::Quit, -1, LOCAL | NOAUTH, NOKEY),
    spec("select", Cmd::Select, 2, LOCAL, NOKEY),
    spec("auth", Cmd::Auth, -2, LOCAL | NOAUTH, NOKEY),
    spec("hello", Cmd::Hello, -1, LOCAL | NOAUTH, NOKEY),
    spec("client", Cmd::Client, -2, LOCAL, NOKEY),
    spec("command", Cmd::Command, -1, LOCAL, NOKEY),
    spec("config", Cmd::Config, -2, LOCAL | ADMIN, NOKEY),
    spec("info", Cmd::Info, -1, 0, NOKEY),
    spec("role", Cmd::Role, 1, 0, NOKEY),
    spec("replicaof", Cmd::ReplicaOf, 3, ADMIN, NOKEY),
    spec("slaveof", Cmd::SlaveOf, 3, ADMIN, NOKEY),
    spec("wait", Cmd::Wait, 3, 0, NOKEY),
    spec("replconf", Cmd::ReplConf, -1, ADMIN, NOKEY),
    spec("psync", Cmd::Psync, -3, ADMIN, NOKEY),
    spec("sync", Cmd::Sync, 1, ADMIN, NOKEY),
    spec("save", Cmd::Save, 1, ADMIN, NOKEY),
    spec("bgsave", Cmd::BgSave, -1, ADMIN, NOKEY),
    spec("bgrewriteaof", Cmd::BgRewriteAof, 1, ADMIN, NOKEY),
    spec("lastsave", Cmd::LastSave, 1, 0, NOKEY),
    spec("multi", Cmd::Multi, 1, LOCAL, NOKEY),
    spec("exec", Cmd::Exec, 1, 0, NOKEY),
    spec("discard", Cmd::Discard, 1, LOCAL, NOKEY),
    spec("watch", Cmd::Watch, -2, READONLY, KEYS),
    spec("unwatch", Cmd::Unwatch, 1, LOCAL, NOKEY),
    spec("subscribe", Cmd::Subscribe, -2, LOCAL, NOKEY),
    spec("psubscribe", Cmd::PSubscribe, -2, LOCAL, NOKEY),
    spec("unsubscribe", Cmd::Unsubscribe, -1, LOCAL, NOKEY),
    spec("punsubscribe", Cmd::PUnsubscribe, -1, LOCAL, NOKEY),
    spec("publish", Cmd::Publish, 3, LOCAL, NOKEY),
    spec("pubsub", Cmd::PubSub, -2, LOCAL, NOKEY),
    spec("function", Cmd::Function, -2, LOCAL, NOKEY),
    spec("getex", Cmd::GetEx, -2, WRITE | STR, KEY1),
    spec(
        "incrbyfloat",
        Cmd::IncrByFloat,
        3,
        WRITE | DENYOOM | STR,
        KEY1,
    ),
    spec("setrange", Cmd::SetRange, 4, WRITE | DENYOOM | STR, KEY1),
    spec("getrange", Cmd::GetRange, 4, READONLY | STR, KEY1),
    spec("substr", Cmd::Substr, 4, READONLY | STR, KEY1),
    spec("msetnx", Cmd::MSetNx, -3, WRITE | DENYOOM, (1, -1, 2)),
    spec("rename", Cmd::Rename, 3, WRITE, (1, 2, 1)),
    spec("renamenx", Cmd::RenameNx, 3, WRITE, (1, 2, 1)),
    spec("copy", Cmd::Copy, -3, WRITE | DENYOOM, (1, 2, 1)),
    spec("touch", Cmd::Touch, -2, READONLY, KEYS),
    spec("expiretime", Cmd::ExpireTime, 2, READONLY, KEY1),
    spec("pexpiretime", Cmd::PExpireTime, 2, READONLY, KEY1),
    spec("randomkey", Cmd::RandomKey, 1, READONLY, NOKEY),
    spec("object", Cmd::Object, -2, READONLY, (2, 2, 1)),
    spec("memory", Cmd::Memory, -2, READONLY, NOKEY),
    spec("debug", Cmd::Debug, -2, ADMIN, NOKEY),
    spec("time", Cmd::Time, 1, 0, NOKEY),
    spec("swapdb", Cmd::SwapDb, 3, WRITE, NOKEY),
    spec("move", Cmd::Move, 3, WRITE, KEY1),
    spec("monitor", Cmd::Monitor, 1, LOCAL | ADMIN, NOKEY),
    spec("blpop", Cmd::BLPop, -3, WRITE, (1, -2, 1)),
    spec("brpop", Cmd::BRPop, -3, WRITE, (1, -2, 1)),
    spec("blmove", Cmd::BLMove, 6, WRITE | DENYOOM, (1, 2, 1)),
    spec("brpoplpush", Cmd::BRPopLPush, 4, WRITE | DENYOOM, (1, 2, 1)),
    spec("bzpopmin", Cmd::BZPopMin, -3, WRITE, (1, -2, 1)),
    spec("bzpopmax", Cmd::BZPopMax, -3, WRITE, (1, -2, 1)),
    spec("zunion", Cmd::ZUnion, -3, READONLY, NOKEY),
    spec("zinter", Cmd::ZInter, -3, READONLY, NOKEY),
    spec("zdiff", Cmd::ZDiff, -3, READONLY, NOKEY),
    spec("zunionstore", Cmd::ZUnionStore, -4, WRITE | DENYOOM, KEY1),
    spec("zinterstore", Cmd::ZInterStore, -4, WRITE | DENYOOM, KEY1),
    spec("zdiffstore", Cmd::ZDiffStore, -4, WRITE | DENYOOM, KEY1),
    spec("zintercard", Cmd::ZInterCard, -3, READONLY, NOKEY),
    spec("lmpop", Cmd::LMPop, -4, WRITE, NOKEY),
    spec("blmpop", Cmd::BLMPop, -5, WRITE, NOKEY),
    spec("zmpop", Cmd::ZMPop, -4, WRITE, NOKEY),
    spec("bzmpop", Cmd::BZMPop, -5, WRITE, NOKEY),
    spec("dump", Cmd::Dump, 2, READONLY, KEY1),
    spec("restore", Cmd::Restore, -4, WRITE | DENYOOM, KEY1),
    spec("hset", Cmd::HSet, -4, WRITE | DENYOOM, KEY1),
    spec("hsetnx", Cmd::HSetNx, 4, WRITE | DENYOOM, KEY1),
    spec("hget", Cmd::HGet, 3, READONLY, KEY1),
    spec("hmget", Cmd::HMGet, -3, READONLY, KEY1),
    spec("hmset", Cmd::HMSet, -4, WRITE | DENYOOM, KEY1),
    spec("hdel", Cmd::HDel, -3, WRITE, KEY1),
    spec("hgetall", Cmd::HGetAll, 2, READONLY, KEY1),
    spec("hkeys", Cmd::HKeys, 2, READONLY, KEY1),
    spec("hvals", Cmd::HVals, 2, READONLY, KEY1),
    spec("hlen", Cmd::HLen, 2, READONLY, KEY1),
    spec("hexists", Cmd::HExists, 3, READONLY, KEY1),
    spec("hincrby", Cmd::HIncrBy, 4, WRITE | DENYOOM, KEY1),
    spec("hincrbyfloat", Cmd::HIncrByFloat, 4, WRITE | DENYOOM, KEY1),
    spec("hstrlen", Cmd::HStrLen, 3, READONLY, KEY1),
    spec("hrandfield", Cmd::HRandField, -2, READONLY, KEY1),
    spec("hscan", Cmd::HScan, -3, READONLY, KEY1),
    spec("lpush", Cmd::LPush, -3, WRITE | DENYOOM, KEY1),
    spec("rpush", Cmd::RPush, -3, WRITE | DENYOOM, KEY1),
    spec("lpushx", Cmd::LPushX, -3, WRITE | DENYOOM, KEY1),
    spec("rpushx", Cmd::RPushX, -3, WRITE | DENYOOM, KEY1),
    spec("lpop", Cmd::LPop, -2, WRITE, KEY1),
    spec("rpop", Cmd::RPop, -2, WRITE, KEY1),
    spec("llen", Cmd::LLen, 2, READONLY, KEY1),
    spec("lrange", Cmd::LRange, 4, READONLY, KEY1),
    spec("lindex", Cmd::LIndex, 3, READONLY, KEY1),
    spec("lset", Cmd::LSet, 4, WRITE | DENYOOM, KEY1),
    spec("lrem", Cmd::LRem, 4, WRITE, KEY1),
    spec("ltrim", Cmd::LTrim, 4, WRITE, KEY1),
    spec("linsert", Cmd::LInsert, 5, WRITE | DENYOOM, KEY1),
    spec("lpos", Cmd::LPos, -3, READONLY, KEY1),
    spec("lmove", Cmd::LMove, 5, WRITE | DENYOOM, (1, 2, 1)),
    spec("rpoplpush", Cmd::RPopLPush, 3, WRITE | DENYOOM, (1, 2, 1)),
    spec("sadd", Cmd::SAdd, -3, WRITE | DENYOOM, KEY1),
    spec("srem", Cmd::SRem, -3, WRITE, KEY1),
    spec("smembers", Cmd::SMembers, 2, READONLY, KEY1),
    spec("sismember", Cmd::SIsMember, 3, READONLY, KEY1),
    spec("smismember", Cmd::SMIsMember, -3, READONLY, KEY1),
    spec("scard", Cmd::SCard, 2, READONLY, KEY1),
    spec("spop", Cmd::SPop, -2, WRITE, KEY1),
    spec("srandmember", Cmd::SRandMember, -2, READONLY, KEY1),
    spec("sinter", Cmd::SInter, -2, READONLY, KEYS),
    spec("sunion", Cmd::SUnion, -2, READONLY, KEYS),
    spec("sdiff", Cmd::SDiff, -2, READONLY, KEYS),
    spec("sinterstore", Cmd::SInterStore, -3, WRITE | DENYOOM, KEYS),
    spec("sunionstore", Cmd::SUnionStore, -3, WRITE | DENYOOM, KEYS),
    spec("sdiffstore", Cmd::SDiffStore, -3, WRITE | DENYOOM, KEYS),
    spec("smove", Cmd::SMove, 4, WRITE, (1, 2, 1)),
    spec("sscan", Cmd::SScan, -3, READONLY, KEY1),
    spec("sintercard", Cmd::SInterCard, -3, READONLY, NOKEY),
    spec("zadd", Cmd::ZAdd, -4, WRITE | DENYOOM, KEY1),
    spec("zrem", Cmd::ZRem, -3, WRITE, KEY1),
    spec("zscore", Cmd::ZScore, 3, READONLY, KEY1),
    spec("zmscore", Cmd::ZMScore, -3, READONLY, KEY1),
    spec("zincrby", Cmd::ZIncrBy, 4, WRITE | DENYOOM, KEY1),
    spec("zcard", Cmd::ZCard, 2, READONLY, KEY1),
    spec("zcount", Cmd::ZCount, 4, READONLY, KEY1),
    spec("zlexcount", Cmd::ZLexCount, 4, READONLY, KEY1),
    spec("zrange", Cmd::ZRange, -4, READONLY, KEY1),
    spec("zrangebyscore", Cmd::ZRangeByScore, -4, READONLY, KEY1),
    spec(
        "zrevrangebyscore",
        Cmd::ZRevRangeByScore,
        -4,
        READONLY,
        KEY1,
    ),
    spec("zrangebylex", Cmd::ZRangeByLex, -4, READONLY, KEY1),
    spec("zrevrangebylex", Cmd::ZRevRangeByLex, -4, READONLY, KEY1),
    spec("zrevrange", Cmd::ZRevRange, -4, READONLY, KEY1),
    spec("zrank", Cmd::ZRank, 3, READONLY, KEY1),
    spec("zrevrank", Cmd::ZRevRank, 3, READONLY, KEY1),
    spec("zpopmin", Cmd::ZPopMin, -2, WRITE, KEY1),
    spec("zpopmax", Cmd::ZPopMax, -2, WRITE, KEY1),
    spec("zremrangebyrank", Cmd::ZRemRangeByRank, 4, WRITE, KEY1),
    spec("zremrangebyscore", Cmd::ZRemRangeByScore, 4, WRITE, KEY1),
    spec("zremrangebylex", Cmd::ZRemRangeByLex, 4, WRITE, KEY1),
    spec("zscan", Cmd::ZScan, -3, READONLY, KEY1),
    spec(
        "zrangestore",
        Cmd::ZRangeStore,
        -5,
        WRITE | DENYOOM,
        (1, 2, 1),
    ),
    spec("zrandmember", Cmd::ZRandMember, -2, READONLY, KEY1),
];

pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    TABLE
        .iter()
        .find(|s| s.name.len() == name.len() && s.name.as_bytes().eq_ignore_ascii_case(name))
}

pub const ERR_NOT_INT: &str = "ERR value is not an integer or out of range";
pub const ERR_SYNTAX: &str = "ERR syntax error";
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const ERR_TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const ERR_KEY_TOO_BIG: &str = "ERR key exceeds maximum allowed size (max-key-bytes)";

/// Redis's reply to an unknown command, quoting (a bounded prefix of) the arguments.
pub fn unknown_command(out: &mut Vec<u8>, a: Argv) {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&a.get(0)[..a.get(0).len().min(128)])
    );
    for arg in a.iter().skip(1) {
        if msg.len() >= 256 {
            break;
        }
        msg.push('\'');
        msg.push_str(&String::from_utf8_lossy(&arg[..arg.len().min(128)]));
        msg.push_str("' ");
    }
    reply::err(out, &msg);
}

pub fn wrong_arity(out: &mut Vec<u8>, name: &str) {
    reply::err(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

/// The live entry of a key, borrowing only `$c.st` so `$c.out` stays writable.
macro_rules! live {
    ($c:expr, $k:expr) => {
        if $c.expire_if_needed($k) {
            None
        } else {
            $c.st.db.peek($k)
        }
    };
}

/// One command's execution context, holding the state lock.
pub struct Ctx<'a> {
    pub kv: &'a Kv,
    pub st: &'a mut State,
    pub out: &'a mut Vec<u8>,
    pub now: u64,
    /// Applying our primary's stream: no expiry decisions, no propagation, no checks.
    pub from_master: bool,
    /// A blocking pop may wait (not inside MULTI, not from the stream).
    pub may_block: bool,
    /// Set by a blocking pop that found nothing: its timeout in ms (0 = forever).
    pub blocked: Option<u64>,
    /// A blocked pop running again: keys of another type are skipped, not errors.
    pub retry: bool,
}

impl Ctx<'_> {
    pub(super) fn propagate(&mut self, args: &[&[u8]]) {
        if !self.from_master {
            self.st.propagate(args);
        }
    }

    /// Lazy expiry; true if `key` is logically gone. A primary deletes it and
    /// propagates DEL; a replica hides it and waits for its primary's DEL.
    pub(super) fn expire_if_needed(&mut self, key: &[u8]) -> bool {
        match self.st.db.peek(key) {
            Some(e) if e.expired(self.now) => {}
            _ => return false,
        }
        if self.from_master {
            return false;
        }
        if self.st.repl.is_replica {
            return true;
        }
        self.st.db.remove(key);
        self.st.propagate(&[b"DEL", key]);
        self.kv
            .stats
            .expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    pub(super) fn live(&mut self, key: &[u8]) -> Option<&Entry> {
        live!(self, key)
    }

    pub(super) fn exists(&mut self, key: &[u8]) -> bool {
        self.live(key).is_some()
    }

    pub(super) fn key_ok(&mut self, key: &[u8]) -> bool {
        if key.len() as u64 > self.kv.conf.max_key_bytes && !self.from_master {
            reply::err(self.out, ERR_KEY_TOO_BIG);
            return false;
        }
        true
    }

    pub(super) fn err(&mut self, msg: &str) {
        reply::err(self.out, msg);
    }
}

/// Executes one keyspace command (arity, auth, role and memory already checked).
pub fn exec(c: &mut Ctx, spec: &Spec, a: Argv) {
    if spec.is(STR) && live!(c, a.get(1)).is_some_and(|e| !matches!(e.val, Value::Str(_))) {
        return c.err(WRONGTYPE);
    }
    match spec.cmd {
        Cmd::Get => get(c, a.get(1)),
        Cmd::Set => set(c, a),
        Cmd::Incr => incr_by(c, a.get(1), 1),
        Cmd::Decr => incr_by(c, a.get(1), -1),
        Cmd::IncrBy | Cmd::DecrBy => match parse_i64(a.get(2)) {
            None => c.err(ERR_NOT_INT),
            Some(d) if spec.cmd == Cmd::IncrBy => incr_by(c, a.get(1), d),
            Some(i64::MIN) => c.err("ERR decrement would overflow"),
            Some(d) => incr_by(c, a.get(1), -d),
        },
        Cmd::MGet => {
            reply::array(c.out, a.len() - 1);
            for k in a.iter().skip(1) {
                get(c, k);
            }
        }
        Cmd::MSet => mset(c, a),
        Cmd::Del | Cmd::Unlink => del(c, a),
        Cmd::Exists => {
            let n = a.iter().skip(1).filter(|k| c.exists(k)).count();
            reply::int(c.out, n as i64);
        }
        Cmd::SetNx => {
            let (k, v) = (a.get(1), a.get(2));
            if !c.key_ok(k) {
                return;
            }
            if c.exists(k) {
                reply::int(c.out, 0);
            } else {
                c.st.db.set(k, v, Some(0));
                c.propagate(&[b"SET", k, v]);
                reply::int(c.out, 1);
            }
        }
        Cmd::SetEx | Cmd::PSetEx => setex(c, spec, a),
        Cmd::GetDel => {
            let k = a.get(1);
            match live!(c, k) {
                None => reply::nil(c.out),
                Some(e) => {
                    reply::bulk(c.out, e.val.bytes());
                    c.st.db.remove(k);
                    c.propagate(&[b"DEL", k]);
                }
            }
        }
        Cmd::GetSet => {
            let (k, v) = (a.get(1), a.get(2));
            if !c.key_ok(k) {
                return;
            }
            match live!(c, k) {
                None => reply::nil(c.out),
                Some(e) => reply::bulk(c.out, e.val.bytes()),
            }
            c.st.db.set(k, v, Some(0));
            c.propagate(&[b"SET", k, v]);
        }
        Cmd::Append => append(c, a.get(1), a.get(2)),
        Cmd::StrLen => {
            let n = c.live(a.get(1)).map_or(0, |e| e.val.bytes().len());
            reply::int(c.out, n as i64);
        }
        Cmd::Expire | Cmd::PExpire | Cmd::ExpireAt | Cmd::PExpireAt => expire(c, spec, a),
        Cmd::Ttl | Cmd::PTtl => {
            let now = c.now;
            let v = match c.live(a.get(1)) {
                None => -2,
                Some(e) if e.exp == 0 => -1,
                Some(e) => {
                    let ms = e.exp.saturating_sub(now) as i64;
                    if spec.cmd == Cmd::Ttl {
                        (ms + 500) / 1000
                    } else {
                        ms
                    }
                }
            };
            reply::int(c.out, v);
        }
        Cmd::Persist => {
            let k = a.get(1);
            let has_ttl = c.live(k).is_some_and(|e| e.exp != 0);
            if has_ttl {
                c.st.db.set_expiry(k, 0);
                c.propagate(&[b"PERSIST", k]);
            }
            reply::int(c.out, has_ttl as i64);
        }
        Cmd::Type => {
            let t = c.live(a.get(1)).map_or("none", |e| e.val.type_name());
            reply::simple(c.out, t);
        }
        Cmd::Keys => {
            let keys = c.st.db.keys(a.get(1), c.now);
            reply::array(c.out, keys.len());
            for k in keys {
                reply::bulk(c.out, k);
            }
        }
        Cmd::Scan => scan(c, a),
        Cmd::DbSize => reply::int(c.out, c.st.db.len() as i64),
        Cmd::FlushDb | Cmd::FlushAll => {
            if a.len() > 2 {
                return c.err(ERR_SYNTAX);
            }
            if a.len() == 2 {
                let m = a.get(1);
                if !m.eq_ignore_ascii_case(b"ASYNC") && !m.eq_ignore_ascii_case(b"SYNC") {
                    return c.err(ERR_SYNTAX);
                }
            }
            if spec.cmd == Cmd::FlushAll {
                c.st.clear_all();
            } else {
                c.st.db.clear();
            }
            let name: &[u8] = if spec.cmd == Cmd::FlushDb {
                b"FLUSHDB"
            } else {
                b"FLUSHALL"
            };
            c.propagate(&[name]);
            reply::ok(c.out);
        }
        Cmd::Ping => reply::simple(c.out, "PONG"),
        _ => {
            // Connection, admin and replication commands are dispatched by the server.
            if !(super::command_more::exec(c, spec, a)
                || super::hash::exec(c, spec, a)
                || super::list::exec(c, spec, a)
                || super::set::exec(c, spec, a)
                || super::zset::exec(c, spec, a)
                || super::blocking::exec(c, spec, a)
                || super::zset_ops::exec(c, spec, a)
                || super::mpop::exec(c, spec, a))
            {
                unknown_command(c.out, a)
            }
        }
    }
}

fn get(c: &mut Ctx, k: &[u8]) {
    // Hot path: one lookup when the key is live.
    match c.st.db.peek(k) {
        None => return reply::nil(c.out),
        Some(Entry {
            val: Value::Str(v),
            exp,
        }) if *exp == 0 || *exp > c.now || c.from_master => return reply::bulk(c.out, v),
        Some(_) => {}
    }
    // MGET answers nil for keys of other types (GET itself was type-checked).
    match live!(c, k) {
        Some(Entry {
            val: Value::Str(v), ..
        }) => reply::bulk(c.out, v),
        _ => reply::nil(c.out),
    }
}

/// Turns an expiry argument into absolute ms; `None` = invalid (Redis's overflow checks).
pub(super) fn absolute_ms(v: i64, seconds: bool, relative: bool, now: u64) -> Option<i64> {
    let ms = if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&v) {
            return None;
        }
        v * 1000
    } else {
        v
    };
    if relative {
        ms.checked_add(now as i64)
    } else {
        Some(ms)
    }
}

fn set(c: &mut Ctx, a: Argv) {
    let (k, v) = (a.get(1), a.get(2));
    let (mut nx, mut xx, mut want_get, mut keepttl) = (false, false, false, false);
    let mut exp: Option<(bool, bool, &[u8])> = None; // (seconds, relative, value)
    let mut i = 3;
    while i < a.len() {
        let o = a.get(i);
        let next = (i + 1 < a.len()).then(|| a.get(i + 1));
        if o.eq_ignore_ascii_case(b"NX") && !xx {
            nx = true;
        } else if o.eq_ignore_ascii_case(b"XX") && !nx {
            xx = true;
        } else if o.eq_ignore_ascii_case(b"GET") {
            want_get = true;
        } else if o.eq_ignore_ascii_case(b"KEEPTTL") && exp.is_none() {
            keepttl = true;
        } else if let (Some(n), false, None) = (next, keepttl, exp) {
            let kind = if o.eq_ignore_ascii_case(b"EX") {
                (true, true)
            } else if o.eq_ignore_ascii_case(b"PX") {
                (false, true)
            } else if o.eq_ignore_ascii_case(b"EXAT") {
                (true, false)
            } else if o.eq_ignore_ascii_case(b"PXAT") {
                (false, false)
            } else {
                return c.err(ERR_SYNTAX);
            };
            exp = Some((kind.0, kind.1, n));
            i += 1;
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 1;
    }
    let mut at: u64 = 0;
    if let Some((seconds, relative, n)) = exp {
        let Some(n) = parse_i64(n) else {
            return c.err(ERR_NOT_INT);
        };
        match (n > 0)
            .then(|| absolute_ms(n, seconds, relative, c.now))
            .flatten()
        {
            Some(ms) if ms > 0 => at = ms as u64,
            _ => return c.err("ERR invalid expire time in 'set' command"),
        }
    }
    if !c.key_ok(k) {
        return;
    }
    let found = match live!(c, k) {
        Some(e) => {
            if want_get {
                let Value::Str(v) = &e.val else {
                    return c.err(WRONGTYPE);
                };
                reply::bulk(c.out, v);
            }
            true
        }
        None => {
            if want_get {
                reply::nil(c.out);
            }
            false
        }
    };
    if (nx && found) || (xx && !found) {
        if !want_get {
            reply::nil(c.out);
        }
        return;
    }
    c.st.db.set(k, v, if keepttl { None } else { Some(at) });
    if !want_get {
        reply::ok(c.out);
    }
    if at != 0 && at <= c.now && !c.from_master && !c.st.repl.is_replica {
        // Already expired (EXAT/PXAT in the past): gone at once, as in Redis.
        c.st.db.remove(k);
        c.propagate(&[b"DEL", k]);
        return;
    }
    let mut b = [0u8; 20];
    if at != 0 {
        let ms = fmt_i64(at as i64, &mut b);
        c.propagate(&[b"SET", k, v, b"PXAT", ms]);
    } else if keepttl {
        c.propagate(&[b"SET", k, v, b"KEEPTTL"]);
    } else {
        c.propagate(&[b"SET", k, v]);
    }
}

fn setex(c: &mut Ctx, spec: &Spec, a: Argv) {
    let (k, t, v) = (a.get(1), a.get(2), a.get(3));
    let Some(n) = parse_i64(t) else {
        return c.err(ERR_NOT_INT);
    };
    let at = match (n > 0)
        .then(|| absolute_ms(n, spec.cmd == Cmd::SetEx, true, c.now))
        .flatten()
    {
        Some(ms) => ms as u64,
        None => {
            return c.err(&format!(
                "ERR invalid expire time in '{}' command",
                spec.name
            ))
        }
    };
    if !c.key_ok(k) {
        return;
    }
    c.st.db.set(k, v, Some(at));
    let mut b = [0u8; 20];
    let ms = fmt_i64(at as i64, &mut b);
    c.propagate(&[b"SET", k, v, b"PXAT", ms]);
    reply::ok(c.out);
}

fn mset(c: &mut Ctx, a: Argv) {
    if a.len().is_multiple_of(2) {
        return wrong_arity(c.out, "mset");
    }
    let mut i = 1;
    while i < a.len() {
        if !c.key_ok(a.get(i)) {
            return;
        }
        i += 2;
    }
    let mut i = 1;
    while i < a.len() {
        c.st.db.set(a.get(i), a.get(i + 1), Some(0));
        i += 2;
    }
    if !c.from_master {
        let args: Vec<&[u8]> = a.iter().collect();
        c.st.propagate(&args);
    }
    reply::ok(c.out);
}

fn del(c: &mut Ctx, a: Argv) {
    let mut removed: Vec<&[u8]> = Vec::new();
    for k in a.iter().skip(1) {
        if c.exists(k) && c.st.db.remove(k).is_some() {
            removed.push(k);
        }
    }
    reply::int(c.out, removed.len() as i64);
    if !removed.is_empty() && !c.from_master {
        removed.insert(0, b"DEL");
        c.st.propagate(&removed);
    }
}

fn incr_by(c: &mut Ctx, k: &[u8], delta: i64) {
    // Fast path: a live key is parsed and rewritten in place with one lookup.
    let now = if c.from_master { 0 } else { c.now };
    let done = c.st.db.with_live_mut(k, now, |v| {
        let n = parse_i64(v).ok_or(ERR_NOT_INT)?;
        let new = n.checked_add(delta).ok_or(ERR_OVERFLOW)?;
        let mut b = [0u8; 20];
        v.clear();
        v.extend_from_slice(fmt_i64(new, &mut b));
        Ok(new)
    });
    match done {
        Some(Ok(new)) => {
            if !c.from_master {
                let mut b = [0u8; 20];
                let s = fmt_i64(new, &mut b);
                c.st.propagate(&[b"SET", k, s, b"KEEPTTL"]);
            }
            return reply::int(c.out, new);
        }
        Some(Err(msg)) => return c.err(msg),
        None => {}
    }
    let cur = match c.live(k) {
        None => None,
        Some(e) => match parse_i64(e.val.bytes()) {
            Some(n) => Some(n),
            None => return c.err(ERR_NOT_INT),
        },
    };
    let Some(new) = cur.unwrap_or(0).checked_add(delta) else {
        return c.err(ERR_OVERFLOW);
    };
    if !c.key_ok(k) {
        return;
    }
    let mut b = [0u8; 20];
    let s = fmt_i64(new, &mut b);
    if cur.is_some() {
        c.st.db.update(k, |v| {
            v.clear();
            v.extend_from_slice(s);
        });
    } else {
        c.st.db.set(k, s, Some(0));
    }
    c.propagate(&[b"SET", k, s, b"KEEPTTL"]);
    reply::int(c.out, new);
}

fn append(c: &mut Ctx, k: &[u8], v: &[u8]) {
    let len = c.live(k).map(|e| e.val.bytes().len());
    let total = len.unwrap_or(0) as u64 + v.len() as u64;
    if total > c.kv.conf.max_value_bytes && !c.from_master {
        return c.err(ERR_TOO_BIG);
    }
    if !c.key_ok(k) {
        return;
    }
    match len {
        Some(_) => c.st.db.update(k, |val| val.extend_from_slice(v)),
        None => c.st.db.set(k, v, Some(0)),
    }
    c.propagate(&[b"APPEND", k, v]);
    reply::int(c.out, total as i64);
}

fn expire(c: &mut Ctx, spec: &Spec, a: Argv) {
    let (k, t) = (a.get(1), a.get(2));
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in a.iter().skip(3) {
        if o.eq_ignore_ascii_case(b"NX") {
            nx = true;
        } else if o.eq_ignore_ascii_case(b"XX") {
            xx = true;
        } else if o.eq_ignore_ascii_case(b"GT") {
            gt = true;
        } else if o.eq_ignore_ascii_case(b"LT") {
            lt = true;
        } else {
            return c.err(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return c.err("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return c.err("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(t) else {
        return c.err(ERR_NOT_INT);
    };
    let seconds = matches!(spec.cmd, Cmd::Expire | Cmd::ExpireAt);
    let relative = matches!(spec.cmd, Cmd::Expire | Cmd::PExpire);
    let Some(when) = absolute_ms(n, seconds, relative, c.now) else {
        return c.err(&format!(
            "ERR invalid expire time in '{}' command",
            spec.name
        ));
    };
    let Some(cur) = c.live(k).map(|e| e.exp) else {
        return reply::int(c.out, 0);
    };
    let refused = (nx && cur != 0)
        || (xx && cur == 0)
        || (gt && (cur == 0 || when <= cur as i64))
        || (lt && cur != 0 && when >= cur as i64);
    if refused {
        return reply::int(c.out, 0);
    }
    if when <= c.now as i64 && !c.from_master && !c.st.repl.is_replica {
        c.st.db.remove(k);
        c.propagate(&[b"DEL", k]);
    } else {
        // 0 means "no expiry" here, so a past time is stored as 1 ms after the epoch.
        let at = when.max(1) as u64;
        c.st.db.set_expiry(k, at);
        let mut b = [0u8; 20];
        let ms = fmt_i64(at as i64, &mut b);
        c.propagate(&[b"PEXPIREAT", k, ms]);
    }
    reply::int(c.out, 1);
}

fn scan(c: &mut Ctx, a: Argv) {
    let cursor = match std::str::from_utf8(a.get(1))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(n) => n,
        None => return c.err("ERR invalid cursor"),
    };
    let mut count = 10usize;
    let mut pattern: Option<&[u8]> = None;
    let mut want_type: Option<&[u8]> = None;
    let mut i = 2;
    while i < a.len() {
        let o = a.get(i);
        if i + 1 >= a.len() {
            return c.err(ERR_SYNTAX);
        }
        let v = a.get(i + 1);
        if o.eq_ignore_ascii_case(b"COUNT") {
            match parse_i64(v) {
                None => return c.err(ERR_NOT_INT),
                Some(n) if n < 1 => return c.err(ERR_SYNTAX),
                Some(n) => count = n.min(1 << 20) as usize,
            }
        } else if o.eq_ignore_ascii_case(b"MATCH") {
            pattern = Some(v).filter(|p| *p != b"*");
        } else if o.eq_ignore_ascii_case(b"TYPE") {
            want_type = Some(v);
        } else {
            return c.err(ERR_SYNTAX);
        }
        i += 2;
    }
    let (next, keys) = c.st.db.scan(cursor, count, pattern, c.now);
    reply::array(c.out, 2);
    reply::bulk(c.out, next.to_string().as_bytes());
    let keys: Vec<&[u8]> = match want_type {
        None => keys,
        Some(t) => keys
            .into_iter()
            .filter(|k| {
                c.st.db
                    .peek(k)
                    .is_some_and(|e| e.val.type_name().as_bytes().eq_ignore_ascii_case(t))
            })
            .collect(),
    };
    reply::array(c.out, keys.len());
    for k in keys {
        reply::bulk(c.out, k);
    }
}

/// COMMAND / COMMAND COUNT / INFO / DOCS / LIST: enough for redis-cli and client libraries.
pub fn command(out: &mut Vec<u8>, a: Argv) {
    if a.len() == 1 {
        reply::array(out, TABLE.len());
        for s in TABLE {
            command_info(out, s);
        }
        return;
    }
    let sub = a.get(1);
    if sub.eq_ignore_ascii_case(b"COUNT") && a.len() == 2 {
        reply::int(out, TABLE.len() as i64);
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        reply::array(out, a.len() - 2);
        for n in a.iter().skip(2) {
            match lookup(n) {
                Some(s) => command_info(out, s),
                None => out.extend_from_slice(b"*-1\r\n"),
            }
        }
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        reply::array(out, 0);
    } else if sub.eq_ignore_ascii_case(b"LIST") && a.len() == 2 {
        reply::array(out, TABLE.len());
        for s in TABLE {
            reply::bulk(out, s.name.as_bytes());
        }
    } else {
        reply::err(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(sub)
            ),
        );
    }
}

fn command_info(out: &mut Vec<u8>, s: &Spec) {
    reply::array(out, 10);
    reply::bulk(out, s.name.as_bytes());
    reply::int(out, s.arity as i64);
    let flags: Vec<&str> = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (NOAUTH, "no_auth"),
    ]
    .iter()
    .filter(|(f, _)| s.is(*f))
    .map(|(_, n)| *n)
    .collect();
    reply::array(out, flags.len());
    for f in flags {
        reply::simple(out, f);
    }
    reply::int(out, s.keys.0 as i64);
    reply::int(out, s.keys.1 as i64);
    reply::int(out, s.keys.2 as i64);
    for _ in 0..4 {
        reply::array(out, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"gEt").map(|s| s.cmd), Some(Cmd::Get));
        assert!(lookup(b"nope").is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn arity() {
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let set = lookup(b"set").unwrap();
        assert!(set.arity_ok(3) && set.arity_ok(9) && !set.arity_ok(2));
    }

    #[test]
    fn expiry_arithmetic_checks_overflow() {
        assert_eq!(absolute_ms(2, true, true, 1000), Some(3000));
        assert_eq!(absolute_ms(i64::MAX / 1000 + 1, true, false, 0), None);
        assert_eq!(absolute_ms(i64::MAX, false, true, 10), None);
    }

    #[test]
    fn unknown_command_quotes_args() {
        let buf = b"FOOab";
        let r = [0..3, 3..4, 4..5];
        let mut out = Vec::new();
        unknown_command(&mut out, Argv { buf, ranges: &r });
        assert_eq!(
            out,
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
        );
    }
}
