//! How a request names a hidden server in the HTTP-specific protocol: the
//! `CONNECT uuid:ID?response=TKN` (or `?cookie=R…`) target of a hidden
//! server, and the `Authorization` of a mobile client (Basic with the ID as
//! user name, or `uuid` and the ID as password; Digest `username="ID"`),
//! which the server strips before it forwards the head.

use crate::secret::Token;
use crate::wire::head::parse_query;
use crate::wire::response::Response;
use crate::wire::status::Refusal;
use uuid::Uuid;

/// Why a `CONNECT` was refused; mapped to its status in [`ConnectError::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// 403: the target is not `uuid:ID`.
    NotUuid,
    /// 400: the ID is not a UUID ([`Refusal::MalformedUuid`]), or both
    /// `response` and `cookie` were given ([`Refusal::ResponseAndCookie`]).
    Malformed(Refusal),
    /// 407: neither `response` nor `cookie`.
    NoCredentials,
    /// 409: data arrived before the 200.
    EarlyData,
}

impl ConnectError {
    /// The response for this refusal (each closes the connection).
    pub fn response(&self) -> Response {
        match self {
            ConnectError::NotUuid => Refusal::NotUuidTarget.response(),
            ConnectError::Malformed(r) => r.response(),
            ConnectError::NoCredentials => Refusal::NoCredentials.response(),
            ConnectError::EarlyData => Refusal::DataBeforeAnswer.response(),
        }
    }
}

/// How a `CONNECT` authenticates.
#[derive(Debug, Clone)]
pub enum ConnectAuth {
    /// A one-time token.
    Token(Token),
    /// A live `R` cookie (its text; parsed when checked).
    Cookie(String),
}

/// Parse a `CONNECT` target: `uuid:ID?response=TKN` or `uuid:ID?cookie=R…`.
///
/// ```
/// use rendezvous::wire::{parse_connect_target, ConnectError};
/// let id = "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f";
/// assert!(parse_connect_target(&format!("uuid:{id}?response=123456")).is_ok());
/// assert_eq!(parse_connect_target("example.org:443").unwrap_err(), ConnectError::NotUuid);
/// assert_eq!(parse_connect_target(&format!("uuid:{id}")).unwrap_err(), ConnectError::NoCredentials);
/// ```
pub fn parse_connect_target(target: &str) -> Result<(Uuid, ConnectAuth), ConnectError> {
    let rest = target.strip_prefix("uuid:").ok_or(ConnectError::NotUuid)?;
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    let uuid = Uuid::try_parse(id).map_err(|_| ConnectError::Malformed(Refusal::MalformedUuid))?;
    let q = parse_query(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match (get("response"), get("cookie")) {
        (Some(_), Some(_)) => Err(ConnectError::Malformed(Refusal::ResponseAndCookie)),
        (Some(t), None) => Ok((uuid, ConnectAuth::Token(Token::new(t)))),
        (None, Some(c)) => Ok((uuid, ConnectAuth::Cookie(c))),
        (None, None) => Err(ConnectError::NoCredentials),
    }
}

/// The UUID an `Authorization` value names: Basic with the ID as user name
/// (or user name `uuid` and the ID as password), or Digest `username="ID"`.
/// `None` means malformed (400).
///
/// ```
/// use rendezvous::wire::authorization_uuid;
/// let id = "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f";
/// let b64 = |s: &str| data_encoding::BASE64.encode(s.as_bytes());
/// assert_eq!(authorization_uuid(&format!("Basic {}", b64(&format!("{id}:")))).unwrap().to_string(), id);
/// assert_eq!(authorization_uuid(&format!("Basic {}", b64(&format!("uuid:{id}")))).unwrap().to_string(), id);
/// assert_eq!(authorization_uuid(&format!("Digest username=\"{id}\", realm=\"x\"")).unwrap().to_string(), id);
/// assert!(authorization_uuid("Basic !!!").is_none());
/// ```
pub fn authorization_uuid(value: &str) -> Option<Uuid> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = data_encoding::BASE64.decode(rest.as_bytes()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
        let id = if user.eq_ignore_ascii_case("uuid") {
            pass
        } else {
            user
        };
        return Uuid::try_parse(id.trim()).ok();
    }
    if scheme.eq_ignore_ascii_case("digest") {
        return digest_param(rest, "username").and_then(|u| Uuid::try_parse(u.trim()).ok());
    }
    None
}

/// One parameter of a Digest `Authorization` value (quoted or token).
fn digest_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            rest = &q[end?..];
            value = out;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
    }
}

/// The head as received, minus every `Authorization` line (and its folded
/// continuation lines).
pub fn strip_authorization(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut dropping = false;
    let mut first = true;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if first {
            out.extend_from_slice(line);
            first = false;
            continue;
        }
        let folded = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if folded && dropping {
            continue;
        }
        dropping = false;
        let name_end = line.iter().position(|&b| b == b':');
        if let Some(i) = name_end {
            if line[..i].eq_ignore_ascii_case(b"authorization") {
                dropping = true;
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out
}
