//! Persistence around the keyspace: `dump.rdb` (SAVE, BGSAVE, `save` rules,
//! load at start) and the once-a-second chores of the append-only file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::aof::{self, Aof, AofError};
use super::db::{self, Db};
use super::rdb::{self, Aux};
use super::{replication, Kv, State};
use crate::conf::kv::AppendFsync;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{0}")]
    Aof(#[from] AofError),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: {msg}")]
    Rdb { path: String, msg: String },
}

pub fn rdb_path(kv: &Kv) -> PathBuf {
    kv.conf.dir.join(&kv.conf.dbfilename)
}

pub fn aof_path(kv: &Kv) -> PathBuf {
    kv.conf.dir.join(&kv.conf.appendfilename)
}

fn now_secs() -> u64 {
    db::now_ms() / 1000
}

/// An RDB of cloned entries (BGSAVE encodes off the lock).
fn encode(dbs: &[super::select::DbEntries], used: u64, aux: &Aux) -> Vec<u8> {
    let mut w = rdb::Writer::new(used, aux);
    for (i, entries) in dbs {
        let expires = entries.iter().filter(|(_, e)| e.exp != 0).count();
        w.select_db(*i as u64, entries.len() as u64, expires as u64);
        for (k, e) in entries {
            w.key(k, &e.val, e.exp);
        }
    }
    w.finish()
}

/// Writes `data` to `path` atomically: a temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PersistError> {
    let ioe = |err| PersistError::Io {
        path: path.display().to_string(),
        err,
    };
    let tmp = path.with_file_name(format!("temp-{}.rdb", std::process::id()));
    let mut f = File::create(&tmp).map_err(ioe)?;
    f.write_all(data).map_err(ioe)?;
    f.sync_all().map_err(ioe)?;
    std::fs::rename(&tmp, path).map_err(ioe)?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

fn aux_of(st: &State) -> Aux {
    Aux {
        repl_id: Some(st.repl.replid.clone()),
        repl_offset: Some(st.repl.offset as i64),
    }
}

/// SAVE: a blocking snapshot under the lock.
pub fn save(kv: &Kv, st: &mut State) -> Result<(), PersistError> {
    let data = st.to_rdb(db::now_ms(), &aux_of(st));
    write_atomic(&rdb_path(kv), &data)?;
    st.dirty = 0;
    st.last_save = now_secs();
    tracing::info!(kv = %kv.name, "DB saved on disk ({} bytes)", data.len());
    Ok(())
}

/// BGSAVE: clones the keyspace under the lock (writes continue meanwhile) and
/// encodes and writes it on a thread. False if one is already running.
pub fn bgsave(kv: &Arc<Kv>) -> bool {
    let (entries, used, aux, dirty) = {
        let mut st = kv.lock();
        if st.bgsave_running {
            return false;
        }
        st.bgsave_running = true;
        let t = std::time::Instant::now();
        let entries = st.clone_all(db::now_ms());
        tracing::debug!(kv = %kv.name, "BGSAVE cloned {} keys in {:?}", st.keys_total(), t.elapsed());
        (entries, st.used(), aux_of(&st), st.dirty)
    };
    let kv2 = kv.clone();
    let spawned = std::thread::Builder::new()
        .name("kv-bgsave".into())
        .spawn(move || {
            let kv = kv2;
            let data = encode(&entries, used, &aux);
            let res = write_atomic(&rdb_path(&kv), &data);
            let mut st = kv.lock();
            st.bgsave_running = false;
            match res {
                Ok(()) => {
                    st.dirty = st.dirty.saturating_sub(dirty);
                    st.last_save = now_secs();
                    st.last_bgsave_ok = true;
                    let keys: usize = entries.iter().map(|(_, e)| e.len()).sum();
                    tracing::info!(kv = %kv.name, "Background saving terminated with success ({keys} keys)");
                }
                Err(e) => {
                    st.last_bgsave_ok = false;
                    tracing::error!(kv = %kv.name, "Background saving failed: {e}");
                }
            }
        });
    if spawned.is_err() {
        kv.lock().bgsave_running = false;
        return false;
    }
    true
}

/// Loads the data at start: the AOF when `appendonly yes` and it exists, else
/// `dump.rdb` when it exists; then opens the AOF for appending (rewriting it
/// from the loaded data when it did not exist, so it is complete on its own).
pub fn load_at_start(kv: &Kv, st: &mut State) -> Result<(), PersistError> {
    let rdb = rdb_path(kv);
    let aofp = aof_path(kv);
    let started = std::time::Instant::now();
    if kv.conf.appendonly && aofp.exists() {
        let n = aof::load(kv, st, &aofp)?;
        tracing::info!(kv = %kv.name, "loaded {} ({n} commands, {} keys) in {:?}", aofp.display(), st.keys_total(), started.elapsed());
        st.aof = Some(Aof::open(aofp)?);
        return Ok(());
    }
    if rdb.exists() {
        let data = std::fs::read(&rdb).map_err(|err| PersistError::Io {
            path: rdb.display().to_string(),
            err,
        })?;
        let dbs = decode(kv, &data).map_err(|msg| PersistError::Rdb {
            path: rdb.display().to_string(),
            msg,
        })?;
        st.replace_all(dbs);
        tracing::info!(kv = %kv.name, "loaded {} ({} keys) in {:?}", rdb.display(), st.keys_total(), started.elapsed());
    }
    if kv.conf.appendonly {
        st.aof = Some(Aof::open(aofp)?);
        aof::rewrite_now(st, &kv.aof_sync)?;
    }
    Ok(())
}

fn decode(kv: &Kv, data: &[u8]) -> Result<Vec<Db>, String> {
    replication::decode_rdb(kv, data).map_err(|e| e.to_string())
}

/// Writes pending AOF bytes and applies the fsync policy (`always` and
/// `everysec` fsync here; `no` leaves it to the kernel). Called once a second
/// in the background and, under `always`, after every batch of writes.
pub fn flush_aof(kv: &Kv, st: &mut State, fsync: bool) -> Result<(), String> {
    let Some(a) = st.aof.as_mut() else {
        return Ok(());
    };
    let (file, upto) = a.write_pending(&kv.aof_sync)?;
    if fsync {
        kv.aof_sync
            .sync(&file, upto)
            .map_err(|e| format!("fsync {}: {e}", a.path.display()))?;
    }
    Ok(())
}

/// The once-a-second chores: AOF flush and fsync, AOF rewrite when it grew,
/// `save` rules.
/// Makes the AOF durable up to `upto` off the worker thread (fsync can take
/// long on a busy disk), sharing the fsync with other callers (`aof::Syncer`).
pub async fn sync_aof(kv: &Arc<Kv>, file: Arc<File>, upto: u64) -> std::io::Result<()> {
    let kv2 = kv.clone();
    tokio::task::spawn_blocking(move || kv2.aof_sync.sync(&file, upto))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

pub async fn cron(kv: Arc<Kv>) {
    if !kv.conf.appendonly && kv.conf.save.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (sync, rewrite, save) = {
            let mut st = kv.lock();
            let sync = match st.aof.as_mut() {
                Some(a) => match a.write_pending(&kv.aof_sync) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(kv = %kv.name, "AOF: {e}");
                        None
                    }
                },
                None => None,
            };
            let rewrite = st.aof.as_ref().is_some_and(|a| {
                a.wants_rewrite(
                    kv.conf.auto_aof_rewrite_percentage,
                    kv.conf.auto_aof_rewrite_min_size,
                )
            });
            let age = now_secs().saturating_sub(st.last_save);
            let save = !st.bgsave_running
                && kv
                    .conf
                    .save
                    .iter()
                    .any(|&(secs, changes)| st.dirty >= changes.max(1) && age >= secs);
            (sync, rewrite, save)
        };
        if let Some((file, upto)) = sync {
            if kv.conf.appendfsync != AppendFsync::No {
                if let Err(e) = sync_aof(&kv, file, upto).await {
                    tracing::error!(kv = %kv.name, "AOF fsync: {e}");
                }
            }
        }
        if rewrite {
            tracing::info!(kv = %kv.name, "AOF grew past auto-aof-rewrite-percentage: rewriting in the background");
            aof::start_rewrite(&kv);
        }
        if save {
            tracing::info!(kv = %kv.name, "save rule reached: background saving");
            bgsave(&kv);
        }
    }
}
