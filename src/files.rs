//! Files and folders on disk, for every writer in the crate: atomic writes
//! (temporary file, fsync, rename, fsync of the folder) with an exact mode,
//! folders created 0700, and the mode checks behind the warnings about files
//! and folders others can read or write.

use crate::error::{IoResultExt, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's mode when group or others have any access to it.
pub fn loose_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// A warning for the operator when the file is readable by group or others.
pub fn mode_warning(path: &Path) -> Option<String> {
    loose_mode(path).map(|mode| {
        format!(
            "{} is accessible by group or others (mode {mode:04o}); run chmod 600",
            path.display()
        )
    })
}

/// Write `data` to `path` atomically: a temporary file in the same folder,
/// fsync, rename over `path`, fsync of the folder. The file gets `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .op("create temporary file")?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .op("set file mode")?;
        f.write_all(data).op("write temporary file")?;
        f.sync_all().op("fsync temporary file")?;
        fs::rename(&tmp, path).op("rename temporary file")?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .op("fsync folder")?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create a folder (and its parents) with mode 0700 if it does not exist.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .op("create state folder")?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).op("set state folder mode")
}

/// A warning for the operator when the state folder can be written by group
/// or others: whoever can write it can replace the users file, the
/// certificate pair or the security state.
pub fn dir_mode_warning(dir: &Path) -> Option<String> {
    let mode = fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then(|| {
        format!(
            "state folder {} is writable by group or others (mode {mode:04o}); run chmod 700",
            dir.display()
        )
    })
}
