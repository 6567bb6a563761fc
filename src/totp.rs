//! RFC 6238 time-based one-time passwords: HMAC-SHA1, a configurable step and
//! 6 to 8 digits, ±1 step of clock skew, constant-time comparison, and the
//! replay floor of RFC 6238 §5.2 (a step at or before the last accepted one is
//! refused). Every function takes the clock as a parameter, so tests never wait.

use crate::error::AuthFailure;
use crate::secret::{ct_eq, Secret, Token};
use ring::hmac;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default time step in seconds.
pub const DEFAULT_STEP: u64 = 30;
/// Default number of digits.
pub const DEFAULT_DIGITS: u32 = 6;

/// The per-user TOTP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Step length in seconds.
    pub step: u64,
    /// Digits in a code (6 to 8).
    pub digits: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            step: DEFAULT_STEP,
            digits: DEFAULT_DIGITS,
        }
    }
}

impl Params {
    /// The time step `unix_time` falls in.
    pub fn step_of(&self, unix_time: u64) -> u64 {
        unix_time / self.step.max(1)
    }

    /// Seconds from `unix_time` to the start of the next step (at least 1).
    pub fn secs_to_next_step(&self, unix_time: u64) -> u64 {
        let step = self.step.max(1);
        (step - unix_time % step).max(1)
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 4226 HOTP: the code for `counter`, `digits` long, zero-padded.
pub fn hotp(secret: &Secret, counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.expose());
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3); a SHA-1 tag is 20 bytes, so the
    // offset (at most 15) plus 4 stays inside it.
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    let modulus = 10u64.pow(digits);
    format!(
        "{:0width$}",
        u64::from(bin) % modulus,
        width = digits as usize
    )
}

/// The TOTP code for `unix_time`.
///
/// ```
/// use rendezvous::{secret::Secret, totp};
/// let s = Secret::new(b"12345678901234567890".to_vec());
/// let p = totp::Params { step: 30, digits: 8 };
/// assert_eq!(totp::generate(&s, p, 59), "94287082");
/// ```
pub fn generate(secret: &Secret, params: Params, unix_time: u64) -> String {
    hotp(secret, params.step_of(unix_time), params.digits)
}

/// Check `token` against the steps around `unix_time` (±1).
///
/// Returns the matched step, which the caller records as the new replay
/// floor. A token of the wrong length or with non-digits is refused before any
/// HMAC is computed; a matching step at or below `last_step` is a replay.
///
/// ```
/// use rendezvous::{secret::{Secret, Token}, totp, error::AuthFailure};
/// let s = Secret::new(b"12345678901234567890".to_vec());
/// let p = totp::Params::default();
/// let t = Token::new(totp::generate(&s, p, 1000));
/// let step = totp::verify(&s, p, &t, 1000, None).unwrap();
/// assert_eq!(totp::verify(&s, p, &t, 1000, Some(step)), Err(AuthFailure::Replay));
/// assert_eq!(totp::verify(&s, p, &Token::new("12"), 1000, None), Err(AuthFailure::BadToken));
/// ```
///
/// The server asks its store instead ([`matching_steps`], then the store's
/// judgement); this is the tests' shorthand.
#[cfg(any(test, feature = "internals"))]
pub fn verify(
    secret: &Secret,
    params: Params,
    token: &Token,
    unix_time: u64,
    last_step: Option<u64>,
) -> Result<u64, AuthFailure> {
    judge(&matching_steps(secret, params, token, unix_time), last_step)
}

/// The steps of the skew window (the current one and one either side)
/// whose code `token` is; none for a token of the wrong length or with
/// non-digits, which is refused before any HMAC is computed. All three are
/// computed whatever matches, so timing does not tell which did.
pub fn matching_steps(secret: &Secret, params: Params, token: &Token, unix_time: u64) -> Vec<u64> {
    let text = token.expose();
    if text.len() != params.digits as usize || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    let current = params.step_of(unix_time);
    [
        current.saturating_sub(1),
        current,
        current.saturating_add(1),
    ]
    .into_iter()
    .filter(|step| {
        ct_eq(
            hotp(secret, *step, params.digits).as_bytes(),
            text.as_bytes(),
        )
    })
    .collect()
}

/// The step a token is accepted for, given the steps it matched: the
/// earliest one above the replay floor `last_step`. A token that matched
/// only steps at or below the floor is a replay (RFC 6238 §5.2).
pub fn judge(matched: &[u64], last_step: Option<u64>) -> Result<u64, AuthFailure> {
    let fresh = matched
        .iter()
        .copied()
        .filter(|s| last_step.is_none_or(|f| *s > f))
        .min();
    match fresh {
        Some(step) => Ok(step),
        None if matched.is_empty() => Err(AuthFailure::BadToken),
        None => Err(AuthFailure::Replay),
    }
}

/// `rendezvous totp`: print the current code.
pub fn totp_now(
    secret: &Secret,
    params: Params,
    at: Option<u64>,
    out: &mut dyn std::io::Write,
) -> crate::error::Result<()> {
    if !crate::limits::TOTP_DIGITS.contains(&params.digits)
        || !crate::limits::TOTP_STEP.contains(&params.step)
    {
        return Err(crate::error::Error::Usage(
            "--digits must be 6 to 8 and --step 1 to 3600".into(),
        ));
    }
    writeln!(out, "{}", generate(secret, params, at.unwrap_or_else(now)))
        .map_err(|e| crate::error::Error::io("write output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> Secret {
        Secret::new(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc6238_appendix_b_sha1() {
        let p = Params {
            step: 30,
            digits: 8,
        };
        let vectors = [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (t, want) in vectors {
            assert_eq!(generate(&rfc_secret(), p, t), want, "T={t}");
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hotp(&rfc_secret(), i as u64, 6), *w);
        }
    }

    #[test]
    fn skew_of_one_step_either_way() {
        let p = Params::default();
        let s = rfc_secret();
        let t = 1_000_000u64;
        for delta in [-30i64, 0, 30] {
            let tok = Token::new(generate(&s, p, (t as i64 + delta) as u64));
            assert!(verify(&s, p, &tok, t, None).is_ok(), "delta {delta}");
        }
        for delta in [-60i64, 60] {
            let tok = Token::new(generate(&s, p, (t as i64 + delta) as u64));
            assert_eq!(
                verify(&s, p, &tok, t, None),
                Err(AuthFailure::BadToken),
                "delta {delta}"
            );
        }
    }

    #[test]
    fn single_use_per_step() {
        let p = Params::default();
        let s = rfc_secret();
        let t = 2_000_000u64;
        let tok = Token::new(generate(&s, p, t));
        let step = verify(&s, p, &tok, t, None).expect("first use");
        assert_eq!(verify(&s, p, &tok, t, Some(step)), Err(AuthFailure::Replay));
        // An older step is refused once a newer one was accepted.
        let old = Token::new(generate(&s, p, t - 30));
        assert_eq!(verify(&s, p, &old, t, Some(step)), Err(AuthFailure::Replay));
        // The next step is fine.
        let next = Token::new(generate(&s, p, t + 30));
        assert_eq!(verify(&s, p, &next, t + 30, Some(step)), Ok(step + 1));
    }

    #[test]
    fn wrong_length_and_non_digits_refused() {
        let s = rfc_secret();
        let p8 = Params {
            step: 30,
            digits: 8,
        };
        let six = Token::new(generate(&s, Params::default(), 59));
        assert_eq!(verify(&s, p8, &six, 59, None), Err(AuthFailure::BadToken));
        let mut eight = generate(&s, p8, 59);
        eight.replace_range(0..1, "a");
        assert_eq!(
            verify(&s, p8, &Token::new(eight), 59, None),
            Err(AuthFailure::BadToken)
        );
    }

    #[test]
    fn steps() {
        let p = Params::default();
        assert_eq!(p.step_of(59), 1);
        assert_eq!(p.secs_to_next_step(59), 1);
        assert_eq!(p.secs_to_next_step(60), 30);
    }
}
