//! Registration with a token: the triple (generic) or the first parked
//! CONNECT's cookie (HTTP) comes from one token per time step, never spent
//! while the local clock is too far from the registrar's to match.

use super::{Agent, T};
use crate::error::{AuthFailure, Error, Result};
use crate::totp;
use crate::wire::Triple;
use std::sync::PoisonError;
use std::time::Duration;

impl Agent {
    /// The current triple, registering with a fresh token when there is none.
    pub(super) fn triple(&self) -> Result<(Triple, u64)> {
        let current = || {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.triple.clone().map(|t| (t, st.generation))
        };
        if let Some(x) = current() {
            return Ok(x);
        }
        // One token registration at a time; the others find its triple.
        let _one = self
            .registering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(x) = current() {
            return Ok(x);
        }
        self.check_clock()?;
        let (token, step) = self.next_token()?;
        let t = self
            .registrar
            .register(&self.uuid, &token)
            .map_err(|e| self.refused(e, step))?;
        log::info!(target: T, "registered uuid={} rendezvous={}:{}", self.uuid, t.host, t.port);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.generation += 1;
        st.triple = Some(t.clone());
        Ok((t, st.generation))
    }

    /// Before spending a token: if the registrar's last `Date` showed a
    /// clock difference no token can bridge (the server accepts one step
    /// either way; `Date` has 1 s resolution), measure again with a health
    /// request, which costs no token, and refuse while it persists. A wrong
    /// local clock then never runs into the failure lockout.
    pub(super) fn check_clock(&self) -> Result<()> {
        let limit = i64::try_from(2 * self.params.step + 2).unwrap_or(i64::MAX);
        let hopeless = |s: Option<i64>| s.filter(|s| s.abs() >= limit);
        if hopeless(self.registrar.clock_skew()).is_some() {
            self.registrar.health()?;
            if let Some(s) = hopeless(self.registrar.clock_skew()) {
                return Err(Error::ClockSkew(s));
            }
        }
        Ok(())
    }

    /// A refused token while the registrar's clock is more than a step away
    /// from ours: the clock, not the secret, is the likely cause; say so.
    pub(super) fn explain(&self, e: Error) -> Error {
        let step = i64::try_from(self.params.step).unwrap_or(i64::MAX);
        match (&e, self.registrar.clock_skew()) {
            (Error::Auth(AuthFailure::BadToken), Some(s)) if s.abs() > step => Error::ClockSkew(s),
            _ => e,
        }
    }

    /// The registrar's time as its last `Date` showed it (ours before any):
    /// which step is current is its call, not ours.
    fn registrar_now(&self) -> u64 {
        let now = totp::now();
        match self.registrar.clock_skew() {
            Some(s) if s < 0 => now.saturating_sub(s.unsigned_abs()),
            Some(s) => now.saturating_add(s.unsigned_abs()),
            None => now,
        }
    }

    /// A token refused: a code for a step ahead of the registrar's clock is
    /// noted, so the next token is that step's code once it is current (a
    /// registrar that accepts the current step only), and the error
    /// explained.
    pub(super) fn refused(&self, e: Error, step: u64) -> Error {
        if matches!(e, Error::Auth(AuthFailure::BadToken)) && step > self.params.step_of(self.registrar_now()) {
            log::debug!(target: T, "the next step's code was refused; sending it again when that step begins");
            self.state.lock().unwrap_or_else(PoisonError::into_inner).early_refused = Some(step);
        }
        self.explain(e)
    }

    /// A token for a step not used yet, and its step. A token is good once
    /// per step, and our server accepts one step of skew: after using this
    /// step, use the next one rather than wait (a restarted server forgets
    /// the floor). Against a registrar that refused such a code (it
    /// accepts the current step only), wait for that step and send its
    /// code at once.
    pub(super) fn next_token(&self) -> Result<(String, u64)> {
        // Called under `registering`, so nothing else moves `last_step`.
        let (last, early) = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (st.last_step, st.early_refused.take())
        };
        if let Some(s) = early {
            // A second late: the skew is known to the second only.
            let late = || self.registrar_now().saturating_sub(1);
            while self.params.step_of(late()) < s && !self.stopped() {
                self.nap(Duration::from_secs(self.params.secs_to_next_step(late()).max(1)));
            }
            if self.stopped() {
                return Err(Error::Stopped);
            }
            self.state.lock().unwrap_or_else(PoisonError::into_inner).last_step = Some(s);
            return Ok((totp::hotp(&self.secret, s, self.params.digits), s));
        }
        let mut now = totp::now();
        let mut step = self.params.step_of(now);
        if let Some(last) = last {
            if last > step {
                let wait = self.params.secs_to_next_step(now);
                log::info!(target: T, "this step's and the next step's codes are used; waiting {wait} s");
                self.nap(Duration::from_secs(wait));
                now = totp::now();
                step = self.params.step_of(now);
            }
            step = step.max(last.saturating_add(1));
        }
        if self.stopped() {
            return Err(Error::Stopped);
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_step = Some(step);
        Ok((totp::hotp(&self.secret, step, self.params.digits), step))
    }

    /// The server refused our registration (it restarted, or the cookie
    /// lapsed): register again. A restarted server has forgotten which steps
    /// were used, so the next attempt tries the current step first; if the
    /// server had not forgotten, that costs one refusal and the step after
    /// is used (a double restart within one step then needs no wait).
    pub(super) fn invalidate(&self, generation: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.generation == generation {
            st.triple = None;
            st.cookie = None;
            st.last_step = None;
        }
    }
}
