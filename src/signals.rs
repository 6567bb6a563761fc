//! Signals as messages: SIGTERM and SIGINT mean stop, SIGHUP means reload.
//! signal-hook's iterator thread does the waiting; no work runs in a handler.

use crate::error::{IoResultExt, Result};
use crossbeam_channel::{unbounded, Receiver};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// Start listening; the receiver yields one message per signal.
pub fn listen() -> Result<Receiver<Signal>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).op("install signal handlers")?;
    let (tx, rx) = unbounded();
    crate::threads::start("signals", move || {
        for s in signals.forever() {
            let msg = if s == SIGHUP {
                Signal::Reload
            } else {
                Signal::Stop
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    })
    .op("start signal thread")?;
    Ok(rx)
}
