//! The agent's `--pool` parking loops ("shifts"). A shift keeps one
//! connection waiting at the server; when a mobile client arrives on it,
//! the thread that holds the client serves it, and the shift goes on on a
//! thread of the pool. Serving in place matters once the client's first
//! bytes come with the `+OK` (`connect --listen` sends what it already
//! has with its cookie): handing the socket to another thread put one more
//! wake-up between those bytes and the service, 20 to 60 µs each on a
//! loaded two-core machine (`perf sched record`, contrib/trace-setup.sh).
//!
//! [`Agent::run`] waits until every shift has ended (after
//! [`Agent::stop`]); clients being served are not waited for, as before.

use super::{Agent, Client, Protocol, T};
use std::sync::{Arc, PoisonError};

/// Counts one shift until dropped (however the shift ends, a panic too).
struct Counted(Arc<Agent>);

impl Drop for Counted {
    fn drop(&mut self) {
        let mut n = self.0.shifts.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        self.0.shifts_ended.notify_all();
    }
}

impl Agent {
    /// Start one shift on a thread of the pool, counted from now.
    pub(super) fn start_shift(self: &Arc<Self>) -> std::io::Result<()> {
        *self.shifts.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        let counted = Counted(self.clone());
        crate::threads::spawn("worker".into(), move || counted.0.clone().shift(counted))
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
    /// With no thread for the next shift, serve it and go on parking here.
    fn shift(self: Arc<Self>, counted: Counted) {
        loop {
            let Some(client) = self.park() else {
                return;
            };
            match self.start_shift() {
                Ok(()) => {
                    drop(counted);
                    self.serve_client(client);
                    return;
                }
                Err(e) => {
                    log::warn!(target: T, "cannot start a thread to wait in this one's place: {e}");
                    self.serve_client(client);
                }
            }
        }
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

    fn serve_client(&self, client: Client) {
        match client {
            Client::Generic(sock) => self.serve(sock),
            Client::Http(conn, first) => self.serve_http(conn, first),
        }
    }
}
