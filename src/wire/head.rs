//! HTTP/1.1 request heads, by hand over httparse: reading one under byte,
//! header-count and time limits (keeping the exact bytes received, so the
//! HTTP-specific protocol can forward them verbatim), and query strings.

use crate::limits::{MAX_HEADERS, MAX_HEAD_BYTES};
use crate::wire::status::Refusal;
use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// Why a request head could not be read. Mapped to a status in one place:
/// [`HeadError::refusal`].
#[derive(Debug)]
pub enum HeadError {
    /// More than [`MAX_HEAD_BYTES`] without the final blank line.
    TooLarge,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// The deadline passed first.
    Timeout,
    /// Not HTTP.
    Malformed,
    /// The peer closed before sending anything.
    Eof,
    /// The socket failed.
    Io(io::Error),
}

impl HeadError {
    /// The refusal to answer with, or `None` to just close.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            HeadError::TooLarge => Some(Refusal::HeadTooLarge),
            HeadError::TooManyHeaders => Some(Refusal::TooManyHeaders),
            HeadError::Malformed => Some(Refusal::MalformedHead),
            HeadError::Timeout => Some(Refusal::HeadTimedOut),
            HeadError::Eof | HeadError::Io(_) => None,
        }
    }

    /// A short reason for the log (never peer data).
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::Eof => "closed",
            HeadError::Io(_) => "i/o error",
            // The others are refusals: their text is the status table's.
            _ => self.refusal().map_or("malformed head", Refusal::text),
        }
    }
}

/// The reason, and for a socket error the error (never peer data).
impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Io(e) => write!(f, "{}: {e}", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

/// A parsed request head, with the exact bytes it arrived as.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method, as sent.
    pub method: String,
    /// The request target, as sent (may hold secrets in its query: never log it).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header names and values in order, names with their letter case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The head exactly as received, up to and including the blank line.
    pub raw: Vec<u8>,
}

impl Head {
    /// The first header named `name` (any case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query parameters, percent-decoded, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        match self.target.split_once('?') {
            Some((_, q)) => parse_query(q),
            None => Vec::new(),
        }
    }

    /// Whether the client asked to keep the connection open.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == 0 {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }

    /// `method path` for the log: the query (where tokens and cookies live) is
    /// dropped, and the rest is truncated and debug-escaped by the caller.
    pub fn summary(&self) -> String {
        let path: String = self.path().chars().take(100).collect();
        let method: String = self.method.chars().take(16).collect();
        format!("{method} {path}")
    }
}

/// Split `a=1&b=2` into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decode `%XX` escapes and `+` (as a space); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stream with a TCP socket underneath, whose timeouts we set.
pub trait TcpBacked {
    /// The socket.
    fn tcp(&self) -> &TcpStream;
}

impl TcpBacked for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Reads request heads from one connection, keeping bytes that arrive after a
/// head (a body, or a pipelined request) for the next call.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// A reader with an empty buffer.
    pub fn new() -> HeadReader {
        HeadReader::default()
    }

    /// Bytes received after the last head and not yet consumed.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Put bytes read past the end of a body back in front of the buffer
    /// (they are the start of the next request).
    pub fn unread(&mut self, bytes: &[u8]) {
        self.buf.splice(0..0, bytes.iter().copied());
    }

    /// Consume up to `n` buffered bytes; returns how many were there.
    pub fn consume(&mut self, n: usize) -> usize {
        let k = n.min(self.buf.len());
        self.buf.drain(..k);
        k
    }

    /// Add received bytes and try to parse a head (the parsing half of
    /// [`HeadReader::read_head`], for tests and fuzzing). `Ok(None)`: more
    /// bytes are needed.
    #[cfg(any(test, feature = "internals"))]
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Head>, HeadError> {
        self.buf.extend_from_slice(bytes);
        match self.try_parse()? {
            Some(h) => Ok(Some(h)),
            None if self.buf.len() >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
            None => Ok(None),
        }
    }

    /// Read one head from `stream` by `deadline` (the socket's read timeout
    /// is set to what is left before every read).
    pub fn read_head<S: Read + TcpBacked>(
        &mut self,
        stream: &mut S,
        deadline: Instant,
    ) -> Result<Head, HeadError> {
        let mut chunk = [0u8; 4096];
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = self.try_parse()? {
                    return Ok(head);
                }
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HeadError::Timeout);
            }
            stream
                .tcp()
                .set_read_timeout(Some(left))
                .map_err(HeadError::Io)?;
            let want = chunk.len().min(MAX_HEAD_BYTES + 1 - self.buf.len());
            match stream.read(&mut chunk[..want]) {
                Ok(0) if self.buf.is_empty() => return Err(HeadError::Eof),
                Ok(0) => return Err(HeadError::Malformed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(HeadError::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(HeadError::Malformed)
                }
                Err(e) => return Err(HeadError::Io(e)),
            }
        }
    }

    fn try_parse(&mut self) -> Result<Option<Head>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => {
                if n > MAX_HEAD_BYTES {
                    return Err(HeadError::TooLarge);
                }
                let head = Head {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    version: req.version.unwrap_or(1),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    raw: self.buf[..n].to_vec(),
                };
                self.buf.drain(..n);
                Ok(Some(head))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
            Err(_) => Err(HeadError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A stream that yields one byte per read (tiny_http's poor network test).
    struct OneByte<'a>(&'a [u8], TcpStream);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    impl TcpBacked for OneByte<'_> {
        fn tcp(&self) -> &TcpStream {
            &self.1
        }
    }

    fn sock() -> (TcpListener, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        (l, s)
    }

    fn read(bytes: &[u8]) -> (Result<Head, HeadError>, HeadReader) {
        let (_l, s) = sock();
        let mut r = HeadReader::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let res = r.read_head(&mut OneByte(bytes, s), deadline);
        (res, r)
    }

    #[test]
    fn one_byte_at_a_time_keeps_exact_bytes_and_leftover() {
        let raw = b"GET /a?uuid=x%20y&b HTTP/1.1\r\nHost: h\r\nX-Case: V\r\n\r\nBODY";
        let (res, mut r) = read(raw);
        // OneByte stops at the head (the parser completes before BODY is read).
        let head = res.expect("parses");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path(), "/a");
        assert_eq!(
            head.query(),
            vec![("uuid".into(), "x y".into()), ("b".into(), "".into())]
        );
        assert_eq!(head.headers[1].0, "X-Case");
        assert_eq!(head.raw, raw[..raw.len() - 4].to_vec());
        assert_eq!(head.summary(), "GET /a");
        assert!(r.take_buffered().is_empty());
    }

    #[test]
    fn limits() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(read(&many).0, Err(HeadError::TooManyHeaders)));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert!(matches!(read(&big).0, Err(HeadError::TooLarge)));
        assert!(matches!(
            read(b"\x16\x03\x01garbage\r\n\r\n").0,
            Err(HeadError::Malformed)
        ));
        assert!(matches!(read(b"").0, Err(HeadError::Eof)));
        assert!(matches!(read(b"GET / HT").0, Err(HeadError::Malformed)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
