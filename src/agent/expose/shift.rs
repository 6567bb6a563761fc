//! The agent's `--pool` parking loops ("shifts"). A shift keeps one
//! connection waiting at the server; when a mobile client of the generic
//! protocol arrives on it, the thread that holds the client serves it, and
//! the shift goes on on a thread of the pool (an HTTP-specific request is
//! served on a pool thread, see `shift`). Serving in place matters once
//! the client's first bytes come with the `+OK` (`connect --listen` sends
//! what it already has with its cookie): handing the socket to another
//! thread put one more wake-up between those bytes and the service, 20 to
//! 60 µs each on a loaded two-core machine (`perf sched record`,
//! contrib/setup-path.sh).
//!
//! [`Agent::run`] waits until every shift has ended (after
//! [`Agent::stop`]); clients being served are not waited for, as before,
//! except by a shift that could not hand its parking on.

use super::{Agent, Client, Protocol, T};
use crate::agent::early::EARLY_MAX;
use crate::relay;
use rustix::net::RecvFlags;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

/// Counts one shift until dropped (however the shift ends, a panic too).
struct Counted(Arc<Agent>);

impl Drop for Counted {
    fn drop(&mut self) {
        let mut n = self.0.shifts.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        // Only the last end is waited for. Notifying on every hand-over
        // woke `run`'s thread once per client for nothing (strace: a futex
        // wake of the main thread, which went straight back to waiting):
        // 10 to 13 µs of the agent's CPU per client, 146-153 before and
        // 136-140 after, over 3,000 back-to-back clients of the chain.
        if *n == 0 {
            self.0.shifts_ended.notify_all();
        }
    }
}

impl Agent {
    /// Start one shift on a thread of the pool, counted from now.
    pub(super) fn start_shift(self: &Arc<Self>) -> std::io::Result<()> {
        let counted = self.count_shift();
        crate::threads::spawn("worker".into(), move || counted.0.clone().shift(counted))
    }

    /// One more shift, until the guard drops.
    fn count_shift(self: &Arc<Self>) -> Counted {
        *self.shifts.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Counted(self.clone())
    }

    /// Until no shift runs.
    pub(super) fn wait_shifts(&self) {
        let mut n = self.shifts.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self
                .shifts_ended
                .wait(n)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Park until a client arrives; hand the parking on and serve it here.
    /// A request of the HTTP-specific protocol is served on a thread of
    /// the pool, as before: its parking does a TLS handshake for every
    /// `CONNECT`, whose stack pages would stay under the relay. Once the
    /// next shift runs, this thread is no longer counted (`run` does not
    /// wait for clients). With no thread for the next shift, serve the
    /// client here, still counted, and go on parking after it.
    fn shift(self: Arc<Self>, counted: Counted) {
        loop {
            let Some(client) = self.park() else {
                return;
            };
            let remote = match client {
                Client::Generic(remote) => remote,
                Client::Http(conn, first) => {
                    let me = self.clone();
                    let spawned =
                        crate::threads::spawn("serve".into(), move || me.serve_http(conn, first));
                    if let Err(e) = spawned {
                        log::warn!(target: T, "cannot start a relay thread: {e}");
                    }
                    continue;
                }
            };
            crate::threads::rename("serve");
            let dialed = self.dial_and_pass(&remote);
            if let Err(e) = self.start_shift() {
                // Still counted while it serves: uncounted, the last shift
                // of `--pool 1` dropped the count to zero and `run`
                // returned, ending the agent with this client.
                log::warn!(target: T, "cannot start a thread to wait in this one's place: {e}");
                self.serve(remote, dialed);
                crate::threads::rename("worker");
                continue;
            }
            drop(counted);
            self.serve(remote, dialed);
            return;
        }
    }

    /// A connection that waits for a client, listed so that [`Agent::stop`]
    /// closes it (at once if the agent is stopping already); its id.
    pub(super) fn watch(&self, sock: &std::net::TcpStream) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = sock.try_clone() {
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, clone);
        }
        // stop() sets the flag, then closes what is listed: listed after
        // that, it is closed here.
        if self.stopped() {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        id
    }

    /// No longer waiting.
    pub(super) fn unwatch(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Never inlined, nor is what it calls: the parking loops' locals
    /// (triples, errors, the status line's buffer) would otherwise sit in
    /// `shift`'s frame under the relay for as long as the client stays,
    /// and put a third page of stack under every served connection
    /// (20.0 KiB of stacks per held connection instead of 16.0: smaps of
    /// the agent with 200 held).
    #[inline(never)]
    fn park(self: &Arc<Self>) -> Option<Client> {
        match self.opts.protocol {
            Protocol::Http => self.http_worker(),
            Protocol::Generic => self.worker(),
        }
    }

    /// Connect to the service and pass it what the mobile client's
    /// connection already holds (the bytes `connect --listen` sent with its
    /// cookie line come with the `+OK`), before the next shift starts: the
    /// thread that starts, its connection and the server's thread for it
    /// would otherwise take a core while those bytes wait. The connection
    /// and how many bytes went; `None` when the client is closed here.
    /// Never inlined, for the stack's sake (see `park`); the buffer is on
    /// the heap for the same reason.
    #[inline(never)]
    fn dial_and_pass(&self, remote: &TcpStream) -> Option<(TcpStream, u64)> {
        let Some(mut local) = self.dial_local() else {
            log::warn!(target: T, "cannot connect to {}: closing the mobile client's connection", self.opts.to);
            let _ = remote.shutdown(Shutdown::Both);
            return None;
        };
        // At most what `connect --listen` sends with its cookie line; more
        // is relayed.
        let mut buf = vec![0u8; EARLY_MAX];
        let n = match rustix::net::recv(remote, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => n,
            Err(rustix::io::Errno::AGAIN) => 0,
            Err(e) => {
                log::debug!(target: T, "mobile client's connection failed: {e}");
                let _ = remote.shutdown(Shutdown::Both);
                return None;
            }
        };
        // 0 is also an end of file: the relay reads it again.
        if let Err(e) = local.write_all(&buf[..n]) {
            log::debug!(target: T, "cannot write to {}: {e}", self.opts.to);
            let _ = remote.shutdown(Shutdown::Both);
            let _ = local.shutdown(Shutdown::Both);
            return None;
        }
        Some((local, n as u64))
    }

    /// Relay a mobile client to the service; this thread carries the
    /// service's answer, which comes first (its first bytes were passed
    /// on in `dial_and_pass`, or the service speaks first).
    fn serve(&self, remote: TcpStream, dialed: Option<(TcpStream, u64)>) {
        let Some((local, passed)) = dialed else {
            return;
        };
        let t = relay::relay_first(Arc::new(remote), Arc::new(local), None, relay::First::Down);
        log::info!(target: T, "connection done to={} up={} down={} secs={:.3}",
            self.opts.to, t.up + passed, t.down, t.duration.as_secs_f64());
    }
}
