//! Thread reuse: a finished connection or relay thread waits briefly for the
//! next job instead of exiting, so a busy server does not pay for a thread
//! creation (stack mapping and all) on every connection and every pair.
//! Idle threads exit after [`IDLE_LINGER`], so the count returns to its
//! baseline soon after load ends. Every thread has the same explicit stack.
//! A reused thread takes each job's name (`conn-<id>`) as its kernel name, so
//! `ps -L`, `top -H` and perf show which connection it serves.

use crate::limits::CONN_STACK;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::io;
use std::sync::OnceLock;
use std::thread;

pub use crate::limits::IDLE_LINGER;

type Job = (String, Box<dyn FnOnce() + Send + 'static>);

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    // A zero-capacity channel: a send succeeds only when an idle thread is
    // already waiting in recv, so a job never sits queued behind busy ones.
    POOL.get_or_init(|| {
        let (tx, rx) = bounded(0);
        Pool { tx, rx }
    })
}

/// Run `job` on an idle thread, or on a new one when none is idle; either way
/// the thread is named `name` while it runs the job. Fails only when the
/// system refuses a new thread.
pub fn spawn<F>(name: String, job: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let p = pool();
    let (name, job): Job = match p.tx.try_send((name, Box::new(job))) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => job,
    };
    let rx = p.rx.clone();
    thread::Builder::new()
        .name(name)
        .stack_size(CONN_STACK)
        .spawn(move || {
            job();
            while let Ok((name, next)) = rx.recv_timeout(IDLE_LINGER) {
                set_kernel_name(&name);
                next();
            }
        })
        .map(|_| ())
}

/// The name `ps -L` shows (the kernel keeps 15 bytes). std's own name for
/// the thread, used in panic messages, stays the first job's.
fn set_kernel_name(name: &str) {
    #[cfg(target_os = "linux")]
    if let Ok(c) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&c);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}
