//! Backups of a node's data directory, taken while it serves.
//!
//! A backup directory mirrors the data directory it was taken from:
//!
//! ```text
//! DEST/db/               RocksDB backup directory of the node store (incremental)
//! DEST/toplevel/db/      the same for an embedded top-level node, when there is one
//! DEST/files/...         the key and token files, as of the latest backup (mode 0600)
//! ```
//!
//! Each backup adds a numbered backup to every store directory (same number in each when
//! they are always backed up together); table files already there are shared, so repeated
//! backups copy only what changed. Restoring rebuilds a data directory from one number.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{BackupInfo, SharedStore, StoreError, StoreResult};

/// What one backup covers: stores by their directory relative to the data directory,
/// and small files (or directories of them) relative to it.
pub struct BackupSet {
    data_dir: PathBuf,
    stores: Vec<(String, SharedStore)>,
    files: Vec<String>,
    /// One backup at a time per set.
    running: Mutex<()>,
}

/// The result of one backup: per store directory, what was added.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub stores: Vec<(String, BackupInfo)>,
    pub files: u32,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("{}: {e}", path.display()))
}

impl BackupSet {
    pub fn new(data_dir: impl Into<PathBuf>) -> BackupSet {
        BackupSet {
            data_dir: data_dir.into(),
            stores: Vec::new(),
            files: Vec::new(),
            running: Mutex::new(()),
        }
    }

    /// Adds a store living in `dir` (relative, e.g. `db`).
    pub fn store(mut self, dir: &str, store: SharedStore) -> BackupSet {
        self.stores.push((dir.to_owned(), store));
        self
    }

    /// Adds a file or a directory of files (relative); absent ones are skipped.
    pub fn file(mut self, path: &str) -> BackupSet {
        self.files.push(path.to_owned());
        self
    }

    /// Takes one backup into `dest` (absolute). Blocking: run it off the async workers.
    /// Why `dest` cannot be a backup directory, if it cannot.
    pub fn check_destination(&self, dest: &Path) -> Result<(), String> {
        if dest.as_os_str().is_empty() {
            return Err("the backup directory is required".into());
        }
        if !dest.is_absolute() {
            return Err(format!(
                "{}: the backup directory must be an absolute path",
                dest.display()
            ));
        }
        if dest.starts_with(&self.data_dir) {
            return Err(format!(
                "{}: the backup directory must be outside the data directory",
                dest.display()
            ));
        }
        Ok(())
    }

    pub fn run(&self, dest: &Path) -> StoreResult<BackupReport> {
        self.check_destination(dest).map_err(StoreError)?;
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut stores = Vec::new();
        for (dir, store) in &self.stores {
            stores.push((dir.clone(), store.backup(&dest.join(dir))?));
        }
        let mut files = 0;
        for f in &self.files {
            files += copy_private(&self.data_dir.join(f), &dest.join("files").join(f))?;
        }
        Ok(BackupReport { stores, files })
    }

    /// [`BackupSet::run`] with its errors for a client: a bad destination is
    /// `InvalidArgument`, a failed backup `Internal` (the detail is logged).
    pub fn run_for_client(&self, dest: &Path) -> crate::error::Result<BackupReport> {
        use crate::error::Error;
        self.check_destination(dest)
            .map_err(|e| Error::invalid(format!("destination: {e}")))?;
        self.run(dest)
            .map_err(|e| Error::internal(format!("backup into {}: {e}", dest.display())))
    }
}

/// Copies a file, or a directory tree of files, with mode 0600; returns how many files.
fn copy_private(from: &Path, to: &Path) -> StoreResult<u32> {
    if from.is_dir() {
        let mut n = 0;
        for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
            let path = entry.map_err(|e| io(from, e))?.path();
            n += copy_private(&path, &to.join(path.file_name().unwrap_or_default()))?;
        }
        return Ok(n);
    }
    if !from.is_file() {
        return Ok(0);
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    // Written aside, then renamed: a crash never leaves a half-copied key.
    let tmp = to.with_extension("part");
    {
        let bytes = std::fs::read(from).map_err(|e| io(from, e))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
        std::io::Write::write_all(&mut f, &bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))?;
    Ok(1)
}

/// The store directories a backup directory holds backups of (`db`, `toplevel/db`).
pub fn store_dirs(src: &Path) -> Vec<&'static str> {
    ["db", "toplevel/db"]
        .into_iter()
        .filter(|dir| src.join(dir).join("meta").is_dir())
        .collect()
}

/// Rebuilds data directory `data_dir` from backup directory `src`: every store directory
/// found there at backup `id` (default: the latest), then the saved files. `data_dir`
/// must not hold a store yet.
#[cfg(feature = "rocks")]
pub fn restore(src: &Path, data_dir: &Path, id: Option<u32>) -> StoreResult<BackupReport> {
    let store_dirs = store_dirs(src);
    if store_dirs.is_empty() {
        return Err(StoreError(format!(
            "{}: not an idnode backup directory (no db/ backup inside)",
            src.display()
        )));
    }
    // The number chosen for the first store applies to all, so they match in time.
    let mut id = id;
    let mut stores = Vec::new();
    for dir in store_dirs {
        let db = data_dir.join(dir);
        std::fs::create_dir_all(&db).map_err(|e| io(&db, e))?;
        let info = super::rocks::restore_backup(&src.join(dir), &db, id)?;
        id = Some(info.id);
        stores.push((dir.to_owned(), info));
    }
    let files = copy_private(&src.join("files"), data_dir)?;
    Ok(BackupReport { stores, files })
}
