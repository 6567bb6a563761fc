//! Thread reuse: a finished connection or relay thread waits briefly for the
//! next job instead of exiting, so a busy server does not pay for a thread
//! creation (stack mapping and all) on every connection and every pair.
//! Idle threads exit after [`IDLE_LINGER`], so the count returns to its
//! baseline soon after load ends. Every thread has the same explicit stack.

use crate::limits::CONN_STACK;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::io;
use std::sync::OnceLock;
use std::thread;

pub use crate::limits::IDLE_LINGER;

type Job = Box<dyn FnOnce() + Send + 'static>;

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

/// Run `job` on an idle thread, or on a new one (named `name`) when none is
/// idle. Fails only when the system refuses a new thread.
pub fn spawn<F>(name: &str, job: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let p = pool();
    let job: Job = match p.tx.try_send(Box::new(job)) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => job,
    };
    let rx = p.rx.clone();
    thread::Builder::new()
        .name(name.to_string())
        .stack_size(CONN_STACK)
        .spawn(move || {
            job();
            while let Ok(next) = rx.recv_timeout(IDLE_LINGER) {
                next();
            }
        })
        .map(|_| ())
}
