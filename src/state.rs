//! The state folder: where it is (`--state-dir`, `$RENDEZVOUS_STATE_DIR`, or
//! `/var/lib/rendezvous`) and what lives in it (`users`, `cert.pem`,
//! `key.pem`, `state`). `files` creates it with mode 0700.

use crate::limits::DEFAULT_STATE_DIR;
use std::path::{Path, PathBuf};

/// The environment variable naming the state folder.
pub const STATE_DIR_ENV: &str = "RENDEZVOUS_STATE_DIR";

/// Resolved paths of the state folder and its files.
#[derive(Debug, Clone)]
pub struct StatePaths {
    /// The folder itself.
    pub dir: PathBuf,
    /// The users file.
    pub users: PathBuf,
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
    /// The security state the server keeps across restarts (replay floors,
    /// locks, last good addresses).
    pub state: PathBuf,
}

impl StatePaths {
    /// Resolve from the flags: `--state-dir`, then the environment, then the default;
    /// `--users`, `--cert` and `--key` override the files inside it.
    pub fn resolve(
        state_dir: Option<&Path>,
        users: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> StatePaths {
        let dir = state_dir
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        StatePaths {
            users: users.map_or_else(|| dir.join("users"), Path::to_path_buf),
            cert: cert.map_or_else(|| dir.join("cert.pem"), Path::to_path_buf),
            key: key.map_or_else(|| dir.join("key.pem"), Path::to_path_buf),
            state: dir.join("state"),
            dir,
        }
    }
}
