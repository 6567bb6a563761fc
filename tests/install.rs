//! `make install` into a temporary DESTDIR lays out the binaries and the four
//! pages with the right modes; `make uninstall` removes them again. Also:
//! `serve` reports readiness on `$NOTIFY_SOCKET`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const FILES: [(&str, u32); 6] = [
    ("usr/local/bin/rendezvous", 0o755),
    ("usr/local/sbin/rendezvousd", 0o755),
    ("usr/local/share/man/man1/rendezvous.1", 0o644),
    ("usr/local/share/man/man5/rendezvous-users.5", 0o644),
    ("usr/local/share/man/man7/rendezvous-protocol.7", 0o644),
    ("usr/local/share/man/man8/rendezvousd.8", 0o644),
];

fn make(target: &str, dest: &Path) -> std::process::Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rendezvous"))
        .parent()
        .expect("binary folder")
        .to_path_buf();
    Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", target, "PREFIX=/usr/local"])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("RELEASE={}", bin_dir.display()))
        .stdin(Stdio::null())
        .output()
        .expect("make is installed")
}

#[test]
fn install_and_uninstall() {
    let dir = TempDir::new("install");
    let o = make("install", dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (f, mode) in FILES {
        let p = dir.path().join(f);
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(m.permissions().mode() & 0o777, mode, "{f}");
    }
    let o = Command::new(dir.path().join("usr/local/bin/rendezvous"))
        .arg("--help")
        .output()
        .expect("run installed binary");
    assert!(o.status.success());
    let o = make("uninstall", dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (f, _) in FILES {
        assert!(!dir.path().join(f).exists(), "{f} left behind");
    }
}

#[test]
fn serve_notifies_readiness() {
    let dir = TempDir::new("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut c = serve_command(&dir.join("state"), &["--plaintext", "--rendezvous", "none"]);
    c.env("NOTIFY_SOCKET", &sock_path);
    let mut p = Proc::spawn("serve", c);
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 arrives");
    assert_eq!(&buf[..n], b"READY=1");
    p.signal("TERM");
    let n = sock.recv(&mut buf).expect("STOPPING=1 arrives");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
}
