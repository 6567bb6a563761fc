//! Newtypes for everything that must never reach a log line: TOTP secrets,
//! one-time tokens and rendezvous cookies. Their `Debug` and `Display` print
//! `***`, they compare in constant time, and secrets are zeroed on drop.

use std::fmt;
use std::hash::{Hash, Hasher};
use uuid::Uuid;

/// Compare two byte strings in time that depends only on their lengths.
///
/// ```
/// use rendezvous::secret::ct_eq;
/// assert!(ct_eq(b"123456", b"123456"));
/// assert!(!ct_eq(b"123456", b"123457"));
/// assert!(!ct_eq(b"12345", b"123456"));
/// ```
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = 0;
    }
    // Make the zeroed buffer observable so the stores are not elided as dead.
    std::hint::black_box(bytes);
}

/// A TOTP shared secret (the decoded key bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap raw key bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// Decode RFC 4648 base32 (either case, padding and spaces optional).
    pub fn from_base32(text: &str) -> Option<Secret> {
        let clean: String = text
            .chars()
            .filter(|c| *c != '=' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let decoded = data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).ok();
        wipe(&mut clean.into_bytes());
        // Padding alone ("=") is not a secret.
        decoded.filter(|d| !d.is_empty()).map(Secret)
    }

    /// Encode as unpadded upper-case base32, the form the users file holds.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The key bytes, for HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A fresh random secret of `len` bytes from the system source.
    pub fn generate(len: usize) -> Secret {
        let mut bytes = vec![0u8; len];
        crate::random::fill(&mut bytes);
        Secret(bytes)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A one-time TOTP token as received from a peer.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wrap a token string.
    pub fn new(s: impl Into<String>) -> Token {
        Token(s.into())
    }

    /// The token text, for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A password for the shared store (`$RENDEZVOUS_STORE_PASSWORD` or
/// `--store-password-file`), never shown.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wrap a password.
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }

    /// The password text, for the store's handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Which side a cookie admits to the rendezvous server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The hidden server (`R`).
    Responder,
    /// The mobile client (`I`).
    Initiator,
}

impl Role {
    fn prefix(self) -> char {
        match self {
            Role::Responder => 'R',
            Role::Initiator => 'I',
        }
    }
}

/// A rendezvous cookie: a role prefix and an independent random UUID v4.
///
/// Written on the wire as `R` or `I` followed by the hyphenated lower-case UUID.
#[derive(Clone, Copy, Eq)]
pub struct Cookie {
    role: Role,
    id: Uuid,
}

impl Cookie {
    /// A fresh random cookie for `role`.
    pub fn generate(role: Role) -> Cookie {
        Cookie {
            role,
            id: Uuid::new_v4(),
        }
    }

    /// Parse the wire form; `None` unless it is a role letter and a well-formed UUID.
    pub fn parse(text: &str) -> Option<Cookie> {
        let mut chars = text.chars();
        let role = match chars.next()? {
            'R' => Role::Responder,
            'I' => Role::Initiator,
            _ => return None,
        };
        let rest = chars.as_str();
        if rest.len() != 36 {
            return None;
        }
        let id = Uuid::try_parse(rest).ok()?;
        Some(Cookie { role, id })
    }

    /// The role this cookie admits.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The wire form (`R…` / `I…`). Only for the wire and JSON bodies, never logs.
    pub fn expose(&self) -> String {
        format!("{}{}", self.role.prefix(), self.id.hyphenated())
    }
}

impl PartialEq for Cookie {
    fn eq(&self, other: &Cookie) -> bool {
        self.role == other.role && ct_eq(self.id.as_bytes(), other.id.as_bytes())
    }
}

impl Hash for Cookie {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.role.hash(state);
        self.id.hash(state);
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({}***)", self.role.prefix())
    }
}

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}***", self.role.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_mask() {
        let s = Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("valid");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        let t = Token::new("123456");
        assert_eq!(format!("{t:?} {t}"), "Token(***) ***");
        let c = Cookie::generate(Role::Responder);
        let shown = format!("{c:?} {c}");
        assert!(!shown.contains(&c.expose()[1..9]), "{shown}");
    }

    #[test]
    fn base32_round_trip() {
        let s = Secret::from_base32("gezdgnbvgy3tqojqgezdgnbvgy3tqojq").expect("lower case");
        assert_eq!(s.expose(), b"12345678901234567890");
        assert_eq!(s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(Secret::from_base32("not base32!").is_none());
        assert!(Secret::from_base32("=").is_none(), "padding alone");
        assert!(Secret::from_base32("").is_none());
    }

    #[test]
    fn cookie_parse() {
        let c = Cookie::generate(Role::Initiator);
        let w = c.expose();
        assert!(w.starts_with('I'));
        assert_eq!(Cookie::parse(&w), Some(c));
        assert!(Cookie::parse("X0000").is_none());
        assert!(Cookie::parse("R").is_none());
        assert!(Cookie::parse(&format!("R{}", &w[1..])).is_some_and(|r| r != c));
        assert!(Cookie::parse(&format!("{w}x")).is_none());
        assert!(Cookie::parse("R{00000000-0000-0000-0000-000000000000}").is_none());
    }
}
