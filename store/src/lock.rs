//! One process at a time on a SQLite database file: a lock file beside it, held with an OS lock
//! (`flock` on Unix, `LockFileEx` on Windows) for as long as the process keeps the store open.
//!
//! Two gateways on one file would each keep their own idea of it (sessions found by key, the
//! day's spend) and split one conversation into two sessions. The OS lets go of the lock when the
//! process ends, however it ends (`kill -9` included): a lock file left behind blocks nobody.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// The lock on a SQLite database file; let go when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// The lock file of a database file: `<file>.lock`, in the same directory.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

/// Takes the lock of the database file `db`, or says which process holds it.
pub(crate) fn acquire(db: &Path) -> Result<FileLock, StoreError> {
    let path = lock_path(db);
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create directory {}: {e}", dir.display())))?;
    let io = |e: std::io::Error| StoreError::Io(format!("lock file {}: {e}", path.display()));
    // Not truncated on open: it tells the holder's pid to whoever finds it locked.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = holder
                .trim()
                .parse::<u32>()
                .map(|pid| format!("pid {pid}"))
                .unwrap_or_else(|_| "pid unknown".to_owned());
            return Err(StoreError::InUse {
                dir: dir.display().to_string(),
                holder: pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Who holds it, for the message a second process gets. Best effort: a full disk must not
    // keep the gateway from starting (it then says "pid unknown").
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(e) = written {
        tracing::debug!(error = %e, path = %path.display(), "cannot write the pid into the lock file");
    }
    Ok(FileLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("x.db");
        let first = acquire(&db).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock_path(&db)).unwrap().trim(),
            std::process::id().to_string()
        );
        let err = acquire(&db).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(
            text.contains(&dir.path().join("data").display().to_string()),
            "{text}"
        );
        drop(first);
        acquire(&db).unwrap();
    }
}
