//! Test harness shared by the integration tests: temporary folders, binary
//! paths, and a bounded way to run a command.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rendezvous-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rendezvousd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rendezvousd"));
    c.env_remove("RENDEZVOUS_STATE_DIR")
        .env_remove("RENDEZVOUS_SECRET");
    c
}

pub fn rendezvous() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rendezvous"));
    c.env_remove("RENDEZVOUS_STATE_DIR")
        .env_remove("RENDEZVOUS_SECRET");
    c
}

/// Run to completion (these commands finish by themselves) and return the output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run command")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}
