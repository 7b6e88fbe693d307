//! The append-only file: every write as a RESP command, fsync policy, group
//! commit under `appendfsync always`, background rewrite, replay at start.
//!
//! Writes are appended to `Aof::buf` under the state lock (in `State::propagate`
//! or, on a replica, with the primary's raw stream) and written with write(2) at
//! the end of each batch, still under the lock so the file order is the
//! keyspace order. fsync happens after the lock is released: under `always`
//! before the batch's replies are sent, one fsync covering every batch written
//! before it (group commit); under `everysec` once a second in the background.
//!
//! Rewrite: under the lock the keyspace is cloned and a diff buffer starts
//! collecting new writes; a thread writes the clone as `SET` commands to a
//! temporary file and fsyncs it; then under the lock the diff is appended, the
//! file renamed over the AOF and the handle switched.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::db::{self, Entry, Value};
use super::frame::{self, fmt_i64, reply, Args, Argv, Limits};
use super::value::fmt_double;
use super::{replication, Kv, State};

#[derive(Debug, thiserror::Error)]
pub enum AofError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: byte {at}: {msg}")]
    Format {
        path: String,
        at: usize,
        msg: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AofError + '_ {
    move |err| AofError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// The open append-only file, under the state lock.
#[derive(Debug)]
pub struct Aof {
    pub path: PathBuf,
    file: Arc<File>,
    /// Commands not yet handed to write(2).
    buf: Vec<u8>,
    /// Bytes in the file now, and right after the last rewrite (the growth base).
    pub size: u64,
    pub base_size: u64,
    /// While a rewrite runs: every write since it started.
    pub rewrite: Option<Vec<u8>>,
    /// Set when a write failed: further writes are refused (MISCONF).
    pub error: Option<String>,
}

/// Group commit bookkeeping, outside the state lock.
#[derive(Debug, Default)]
pub struct Syncer {
    /// Bytes written to the AOF so far (across rewrites); bumped after each write.
    pub written: std::sync::atomic::AtomicU64,
    /// Bytes known to be on disk; the mutex also serializes fsyncs.
    synced: Mutex<u64>,
}

impl Syncer {
    /// Makes everything written up to `upto` durable, sharing fsyncs between callers.
    pub fn sync(&self, file: &File, upto: u64) -> std::io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= upto {
            return Ok(());
        }
        let target = self.written.load(Ordering::Acquire);
        file.sync_data()?;
        *synced = target.max(upto);
        Ok(())
    }
}

impl Aof {
    pub fn open(path: PathBuf) -> Result<Aof, AofError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        Ok(Aof {
            path,
            file: Arc::new(file),
            buf: Vec::new(),
            size,
            base_size: size,
            rewrite: None,
            error: None,
        })
    }

    pub fn append(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if let Some(r) = self.rewrite.as_mut() {
            r.extend_from_slice(bytes);
        }
    }

    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// write(2)s the pending commands; returns the file and the byte count to
    /// fsync up to (outside the lock).
    pub fn write_pending(&mut self, syncer: &Syncer) -> Result<(Arc<File>, u64), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if !self.buf.is_empty() {
            let mut f: &File = &self.file;
            if let Err(e) = f.write_all(&self.buf) {
                let msg = format!("writing {}: {e}", self.path.display());
                tracing::error!("{msg}");
                self.error = Some(msg.clone());
                return Err(msg);
            }
            self.size += self.buf.len() as u64;
            syncer
                .written
                .fetch_add(self.buf.len() as u64, Ordering::AcqRel);
            self.buf.clear();
            if self.buf.capacity() > 1 << 20 {
                self.buf.shrink_to(64 << 10);
            }
        }
        Ok((self.file.clone(), syncer.written.load(Ordering::Acquire)))
    }

    /// Whether the file grew enough to be rewritten.
    pub fn wants_rewrite(&self, percentage: u64, min_size: u64) -> bool {
        percentage > 0
            && self.rewrite.is_none()
            && self.size >= min_size
            && self.size > self.base_size + self.base_size * percentage / 100
    }
}

/// Elements per command when a collection is rewritten (as Redis's AOF_REWRITE_ITEMS_PER_CMD).
const ITEMS_PER_CMD: usize = 64;

/// One key as the commands that recreate it.
fn entry_command(out: &mut Vec<u8>, key: &[u8], e: &Entry) {
    let mut b = [0u8; 20];
    let at = fmt_i64(e.exp as i64, &mut b);
    let items: Vec<Vec<&[u8]>> = match &e.val {
        Value::Str(v) => {
            if e.exp != 0 {
                reply::command(out, &[b"SET", key, v, b"PXAT", at]);
            } else {
                reply::command(out, &[b"SET", key, v]);
            }
            return;
        }
        Value::Hash(h) => chunks(
            b"HSET",
            key,
            h.iter().flat_map(|(f, v)| [&f[..], &v[..]]),
            2,
        ),
        Value::List(l) => chunks(b"RPUSH", key, l.iter().map(|v| &v[..]), 1),
        Value::Set(s) => chunks(b"SADD", key, s.iter().map(|v| &v[..]), 1),
        Value::ZSet(z) => {
            let scores: Vec<String> = z.tree.iter().map(|(s, _)| fmt_double(s.0)).collect();
            let args: Vec<&[u8]> = z
                .tree
                .iter()
                .zip(&scores)
                .flat_map(|((_, m), s)| [s.as_bytes(), &m[..]])
                .collect();
            for c in args.chunks(ITEMS_PER_CMD * 2) {
                let mut cmd: Vec<&[u8]> = vec![b"ZADD", key];
                cmd.extend_from_slice(c);
                reply::command(out, &cmd);
            }
            Vec::new()
        }
    };
    for cmd in items {
        reply::command(out, &cmd);
    }
    if e.exp != 0 {
        reply::command(out, &[b"PEXPIREAT", key, at]);
    }
}

/// `name key items...` commands of at most ITEMS_PER_CMD items (`per` arguments each).
fn chunks<'a>(
    name: &'a [u8],
    key: &'a [u8],
    args: impl Iterator<Item = &'a [u8]>,
    per: usize,
) -> Vec<Vec<&'a [u8]>> {
    let args: Vec<&[u8]> = args.collect();
    args.chunks(ITEMS_PER_CMD * per)
        .map(|c| {
            let mut cmd = vec![name, key];
            cmd.extend_from_slice(c);
            cmd
        })
        .collect()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".rewrite.tmp");
    PathBuf::from(p)
}

/// Writes every database's entries as a fresh file at `tmp`, fsynced; it
/// ends selecting `end_db`, the database the writes appended after it assume.
fn write_base(
    tmp: &Path,
    dbs: &[super::select::DbEntries],
    end_db: Option<usize>,
) -> Result<File, AofError> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(io(tmp))?);
    let mut cmd = Vec::new();
    let select = |cmd: &mut Vec<u8>, i: usize| {
        let mut b = [0u8; 20];
        reply::command(cmd, &[b"SELECT", fmt_i64(i as i64, &mut b)]);
    };
    for (i, entries) in dbs {
        cmd.clear();
        select(&mut cmd, *i);
        f.write_all(&cmd).map_err(io(tmp))?;
        for (k, e) in entries {
            cmd.clear();
            entry_command(&mut cmd, k, e);
            f.write_all(&cmd).map_err(io(tmp))?;
        }
    }
    if let Some(i) = end_db {
        cmd.clear();
        select(&mut cmd, i);
        f.write_all(&cmd).map_err(io(tmp))?;
    }
    let f = f.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    f.sync_all().map_err(io(tmp))?;
    Ok(f)
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent() {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}

/// Starts a background rewrite; false if one is already running or AOF is off.
pub fn start_rewrite(kv: &Arc<Kv>) -> bool {
    let (entries, end_db, path) = {
        let mut st = kv.lock();
        let now = db::now_ms();
        let entries = st.clone_all(now);
        let end_db = st.stream_db();
        let Some(aof) = st.aof.as_mut() else {
            return false;
        };
        if aof.rewrite.is_some() {
            return false;
        }
        aof.rewrite = Some(Vec::new());
        (entries, end_db, aof.path.clone())
    };
    let kv = kv.clone();
    let spawned = std::thread::Builder::new()
        .name("kv-aof-rewrite".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let tmp = tmp_path(&path);
            let res = write_base(&tmp, &entries, end_db).and_then(|f| finish_rewrite(&kv, f, &tmp));
            let keys: usize = entries.iter().map(|(_, e)| e.len()).sum();
            match res {
                Ok(size) => tracing::info!(kv = %kv.name, "AOF rewritten: {keys} keys, {size} bytes, {:?}", started.elapsed()),
                Err(e) => {
                    tracing::error!(kv = %kv.name, "AOF rewrite failed: {e}");
                    let _ = std::fs::remove_file(&tmp);
                    if let Some(a) = kv.lock().aof.as_mut() {
                        a.rewrite = None;
                    }
                }
            }
        });
    spawned.is_ok()
}

/// Appends the writes made during the rewrite and swaps the new file in.
fn finish_rewrite(kv: &Kv, mut f: File, tmp: &Path) -> Result<u64, AofError> {
    let mut st = kv.lock();
    let st = &mut *st;
    let Some(aof) = st.aof.as_mut() else {
        return Ok(0);
    };
    // The old file stays complete until the rename.
    aof.write_pending(&kv.aof_sync)
        .map_err(|msg| AofError::Format {
            path: aof.path.display().to_string(),
            at: 0,
            msg,
        })?;
    let diff = aof.rewrite.take().unwrap_or_default();
    f.write_all(&diff).map_err(io(tmp))?;
    f.sync_all().map_err(io(tmp))?;
    std::fs::rename(tmp, &aof.path).map_err(io(&aof.path))?;
    sync_dir(&aof.path);
    let size = f.metadata().map_err(io(tmp))?.len();
    let file = OpenOptions::new()
        .append(true)
        .open(&aof.path)
        .map_err(io(&aof.path))?;
    aof.file = Arc::new(file);
    aof.size = size;
    aof.base_size = size;
    Ok(size)
}

/// Writes the whole keyspace as a fresh AOF right now (at start, and after a
/// replica's full sync, when the file must describe the new data set).
pub fn rewrite_now(st: &mut State, syncer: &Syncer) -> Result<(), AofError> {
    let entries = st.clone_all(0);
    let end_db = st.stream_db();
    let Some(aof) = st.aof.as_mut() else {
        return Ok(());
    };
    let tmp = tmp_path(&aof.path);
    let f = write_base(&tmp, &entries, end_db)?;
    std::fs::rename(&tmp, &aof.path).map_err(io(&aof.path))?;
    sync_dir(&aof.path);
    let size = f.metadata().map_err(io(&tmp))?.len();
    aof.file = Arc::new(
        OpenOptions::new()
            .append(true)
            .open(&aof.path)
            .map_err(io(&aof.path))?,
    );
    aof.buf.clear();
    aof.rewrite = None;
    aof.size = size;
    aof.base_size = size;
    // Nothing pending: the new file already holds everything.
    let w = syncer.written.load(Ordering::Acquire);
    syncer.sync(&aof.file, w).map_err(io(&aof.path))?;
    Ok(())
}

/// Replays the AOF at `path` into the keyspace. A torn last command (a crash
/// mid-write) or an unterminated MULTI is cut off with a warning; anything else
/// malformed is an error naming the byte offset.
pub fn load(kv: &Kv, st: &mut State, path: &Path) -> Result<usize, AofError> {
    let data = std::fs::read(path).map_err(io(path))?;
    let fmt = |at: usize, msg: String| AofError::Format {
        path: path.display().to_string(),
        at,
        msg,
    };
    let lim = Limits {
        max_bulk: kv.conf.max_value_bytes.min(usize::MAX as u64) as usize,
        max_array: kv.conf.max_array_len.min(usize::MAX as u64) as usize,
        max_inline: kv.conf.max_inline_bytes.min(usize::MAX as u64) as usize,
        authed: true,
    };
    let now = db::now_ms();
    let mut args = Args::default();
    let mut sink = Vec::new();
    let mut pos = 0;
    let mut applied = 0;
    // Inside MULTI: (offset of the MULTI, queued commands as (bytes, ranges)).
    let mut multi: Option<(usize, Vec<(usize, usize)>)> = None;
    let mut good_end = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let n = match frame::parse(rest, &lim, &mut args) {
            Ok(Some(n)) => n,
            Ok(None) => break,
            Err(e) => return Err(fmt(pos, e.to_string())),
        };
        let a = Argv {
            buf: rest,
            ranges: &args.ranges,
        };
        let name = a.get(0);
        if name.eq_ignore_ascii_case(b"MULTI") {
            multi = Some((pos, Vec::new()));
        } else if name.eq_ignore_ascii_case(b"EXEC") {
            if let Some((_, queued)) = multi.take() {
                let mut qargs = Args::default();
                for (at, len) in queued {
                    let q = &data[at..at + len];
                    if let Ok(Some(_)) = frame::parse(q, &lim, &mut qargs) {
                        let qa = Argv {
                            buf: q,
                            ranges: &qargs.ranges,
                        };
                        replication::apply(kv, st, qa, now, &mut sink).map_err(|m| fmt(at, m))?;
                        applied += 1;
                    }
                }
            }
        } else if let Some((_, q)) = multi.as_mut() {
            q.push((pos, n));
        } else if !a.is_empty() {
            replication::apply(kv, st, a, now, &mut sink).map_err(|m| fmt(pos, m))?;
            applied += 1;
        }
        pos += n;
        if multi.is_none() {
            good_end = pos;
        }
    }
    if good_end < data.len() {
        tracing::warn!(
            kv = %kv.name,
            "{}: truncating {} bytes of a torn last command (or unfinished MULTI) at byte {good_end}",
            path.display(),
            data.len() - good_end
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(good_end as u64).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok(applied)
}
