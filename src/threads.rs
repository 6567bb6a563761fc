//! Thread reuse: a finished connection or relay thread waits briefly for the
//! next job instead of exiting, so a busy server does not pay for a thread
//! creation (stack mapping and all) on every connection and every pair.
//! Idle threads exit after [`IDLE_LINGER`], so the count returns to its
//! baseline soon after load ends. Every thread has the same explicit stack.
//! A reused thread takes each job's name (`conn-<id>`) as its kernel name, so
//! `ps -L`, `top -H` and perf show which connection it serves.
//!
//! A job goes to the thread idle longest (a queue). Under a steady trickle
//! of connections after a burst, that alone would hand every idle thread a
//! job within its linger and keep them all; so the pool also notes the
//! fewest threads that sat idle at once during each linger, and that many,
//! never needed, exit when they next finish a job. (Handing the job to the
//! thread idle shortest would shrink the pool too, but cost about a fifth of
//! the pairings per second on two cores: `cargo bench --bench relay`.)

use crate::limits::CONN_STACK;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::limits::IDLE_LINGER;

type Job = (String, Box<dyn FnOnce() + Send + 'static>);

/// One value handed from one thread to another that waits for it: an idle
/// thread's next job (whoever takes its slot from the idle queue owes it
/// exactly one), or a relay direction's end. A mutex and a condition
/// variable, not a channel: a channel's receiver spins and calls
/// `sched_yield` about ten times before it sleeps, and every handed-over
/// connection paid for that (11 `sched_yield` and 20 context switches per
/// connection in each of the chain's three processes, `perf stat -e
/// syscalls:sys_enter_sched_yield`).
pub(crate) struct Handoff<T> {
    value: Mutex<Option<T>>,
    given: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            value: Mutex::new(None),
            given: Condvar::new(),
        }
    }
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, Option<T>> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand `value` over, waking the waiter.
    pub(crate) fn give(&self, value: T) {
        *self.lock() = Some(value);
        self.given.notify_one();
    }

    /// The value, once given; `None` when `wait` passes first.
    pub(crate) fn wait(&self, wait: Option<Duration>) -> Option<T> {
        let mut value = self.lock();
        let end = wait.map(|w| Instant::now() + w);
        loop {
            if let Some(v) = value.take() {
                return Some(v);
            }
            value = match end {
                None => self.given.wait(value).unwrap_or_else(PoisonError::into_inner),
                Some(end) => {
                    let left = end.checked_duration_since(Instant::now())?;
                    self.given
                        .wait_timeout(value, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// The idle threads, the one idle longest first.
struct Idle {
    queue: VecDeque<(u64, Arc<Handoff<Job>>)>,
    /// The fewest threads idle at once since `since`.
    low: usize,
    since: Instant,
    /// Threads to retire as they finish their jobs.
    retire: usize,
}

struct Pool {
    idle: Mutex<Idle>,
    next: AtomicU64,
    linger: Duration,
}

impl Pool {
    fn new(linger: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Idle {
                queue: VecDeque::new(),
                low: 0,
                since: Instant::now(),
                retire: 0,
            }),
            next: AtomicU64::new(0),
            linger,
        })
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `job` on the thread idle longest, or on a new one.
    fn spawn(
        self: &Arc<Self>,
        name: String,
        job: Box<dyn FnOnce() + Send + 'static>,
    ) -> io::Result<()> {
        let taken = {
            let mut idle = self.idle();
            let t = idle.queue.pop_front();
            idle.low = idle.low.min(idle.queue.len());
            t
        };
        if let Some((_, slot)) = taken {
            // The thread waits for exactly this, and nobody else can give
            // it one: its slot left the queue with us.
            slot.give((name, job));
            return Ok(());
        }
        let pool = self.clone();
        thread::Builder::new()
            .name(name)
            .stack_size(CONN_STACK)
            .spawn(move || {
                job();
                pool.serve();
            })
            .map(|_| ())
    }

    /// A finished thread's loop: offer itself, run what it is given; exit
    /// when the pool has more threads than it needed, or once nobody wanted
    /// it for the linger. Never inlined: inlined into the thread's start,
    /// its locals sat above every job's frames, and `connect --listen`'s
    /// dial, which ran within a few hundred bytes of one stack page, took
    /// a second page under every held connection (musl build: 13.1 KiB of
    /// connect's RSS per held connection instead of 9.1, `make bench-peers`).
    #[inline(never)]
    fn serve(&self) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Handoff::default());
        loop {
            {
                let mut idle = self.idle();
                if idle.since.elapsed() >= self.linger {
                    // Threads idle all through the window were not needed:
                    // that many go as they come back.
                    idle.retire = idle.low;
                    idle.low = idle.queue.len() + 1;
                    idle.since = Instant::now();
                }
                if idle.retire > 0 {
                    idle.retire -= 1;
                    return;
                }
                idle.queue.push_back((id, slot.clone()));
            }
            let (name, next) = match slot.wait(Some(self.linger)) {
                Some(j) => j,
                None => {
                    let mut idle = self.idle();
                    if let Some(at) = idle.queue.iter().position(|(i, _)| *i == id) {
                        idle.queue.remove(at);
                        idle.low = idle.low.min(idle.queue.len());
                        return;
                    }
                    // Taken just now: the job is on its way.
                    drop(idle);
                    match slot.wait(None) {
                        Some(j) => j,
                        None => return,
                    }
                }
            };
            set_kernel_name(&name);
            next();
        }
    }
}

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(IDLE_LINGER))
}

/// Run `job` on an idle thread, or on a new one when none is idle; either way
/// the thread is named `name` while it runs the job. Fails only when the
/// system refuses a new thread.
pub fn spawn<F>(name: String, job: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    pool().spawn(name, Box::new(job))
}

/// Start a thread of its own (not from the pool): named `name`, with the
/// crate's explicit stack size ([`CONN_STACK`]), as every thread the crate
/// starts is. For threads that live long (accept loops, the reaper, an
/// agent's cookie refresher) or must not wait for a pooled one.
pub fn start<F, T>(name: impl Into<String>, f: F) -> io::Result<thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name(name.into())
        .stack_size(CONN_STACK)
        .spawn(f)
}

/// Name the calling thread `name` in `ps -L` from now on (a job of the
/// pool whose role changes as it runs).
pub fn rename(name: &str) {
    set_kernel_name(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Barrier;

    /// After a burst of 16 threads, a steady trickle of jobs (one every
    /// 10 ms: each idle thread would get one well within the linger) does
    /// not keep the 16 alive: the ones never needed exit.
    #[test]
    fn the_pool_shrinks_under_a_trickle() {
        let linger = Duration::from_millis(300);
        let pool = Pool::new(linger);
        let burst = Arc::new(Barrier::new(17));
        for i in 0..16 {
            let b = burst.clone();
            pool.spawn(
                format!("burst-{i}"),
                Box::new(move || {
                    b.wait();
                }),
            )
            .expect("spawn");
        }
        burst.wait();
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        while start.elapsed() < linger * 4 {
            let d = done.clone();
            pool.spawn(
                "trickle".into(),
                Box::new(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .expect("spawn");
            thread::sleep(Duration::from_millis(10));
        }
        let idle = pool.idle().queue.len();
        // Handing jobs round all idle threads with nothing else would keep
        // the 16 (each would get one every 160 ms); a scheduling delay may
        // keep a second or third.
        assert!(idle <= 6, "{idle} idle threads kept alive by the trickle");
        assert!(done.load(Ordering::SeqCst) > 50, "the trickle ran");
        // And with nothing to do, the last ones go too.
        let start = Instant::now();
        while !pool.idle().queue.is_empty() {
            assert!(start.elapsed() < linger * 10, "idle threads exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Concurrent jobs each get a thread, and every job runs exactly once.
    #[test]
    fn every_job_runs_once() {
        let pool = Pool::new(Duration::from_millis(200));
        let done = Arc::new(AtomicUsize::new(0));
        for round in 0..20 {
            let gate = Arc::new(Barrier::new(9));
            for i in 0..8 {
                let (g, d) = (gate.clone(), done.clone());
                pool.spawn(
                    format!("r{round}-{i}"),
                    Box::new(move || {
                        g.wait();
                        d.fetch_add(1, Ordering::SeqCst);
                    }),
                )
                .expect("spawn");
            }
            gate.wait();
        }
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < 160 {
            assert!(start.elapsed() < Duration::from_secs(10), "jobs lost");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(done.load(Ordering::SeqCst), 160);
    }
}
