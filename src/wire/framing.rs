//! Where a request's body ends (RFC 9112 §6.3): `Content-Length`, or the
//! chunked coding, which a bounded decoder walks to find its end; and the
//! ambiguous framings that are refused.

use crate::wire::head::Head;
use crate::wire::status::Refusal;

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request's framing is refused; each closes the connection, as the
/// body's end (and so the next request's start) cannot be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Transfer-Encoding` and `Content-Length` (a smuggling vector).
    Both,
    /// A `Content-Length` that is not `1*DIGIT`, or several that differ.
    BadLength,
    /// A `Transfer-Encoding` that is not a single `chunked`, or one on HTTP/1.0.
    BadCoding,
    /// A transfer coding other than `chunked`.
    UnknownCoding,
}

impl FramingError {
    /// The refusal to answer with.
    pub fn refusal(&self) -> Refusal {
        match self {
            FramingError::Both => Refusal::TransferEncodingAndLength,
            FramingError::BadLength => Refusal::MalformedContentLength,
            FramingError::BadCoding => Refusal::MalformedTransferEncoding,
            FramingError::UnknownCoding => Refusal::CodingNotImplemented,
        }
    }

    /// The diagnostic (never peer data).
    pub fn reason(&self) -> &'static str {
        self.refusal().text()
    }
}

impl Head {
    /// The body's framing. Every `Content-Length` line (and every item of a
    /// comma list in one) must be `1*DIGIT` and all must agree; a
    /// `Transfer-Encoding` must be exactly `chunked`, and never come with a
    /// `Content-Length`.
    pub fn framing(&self) -> Result<Framing, FramingError> {
        let values = |name: &'static str| {
            self.headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(|&b| b == b','))
                .map(|v| v.trim_ascii())
        };
        let mut length: Option<u64> = None;
        let mut any_length = false;
        for v in values("content-length") {
            any_length = true;
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::BadLength);
            }
            length = Some(n);
        }
        let codings: Vec<&[u8]> = values("transfer-encoding").collect();
        if codings.is_empty() {
            return Ok(length.map_or(Framing::None, Framing::Length));
        }
        if any_length {
            return Err(FramingError::Both);
        }
        if let Some(other) = codings.iter().find(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(if other.is_empty() {
                FramingError::BadCoding
            } else {
                FramingError::UnknownCoding
            });
        }
        if codings.len() > 1 || self.version == 0 {
            return Err(FramingError::BadCoding);
        }
        Ok(Framing::Chunked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::chunked::{ChunkError, Chunked};
    use crate::wire::head::HeadReader;

    fn framing_of(headers: &str) -> Result<Framing, FramingError> {
        let text = format!("PUT / HTTP/1.1\r\n{headers}\r\n");
        HeadReader::new()
            .feed(text.as_bytes())
            .expect("parses")
            .expect("complete")
            .framing()
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        use FramingError::*;
        let cases: [(&str, Result<Framing, FramingError>); 14] = [
            ("", Ok(None)),
            ("Content-Length: 0\r\n", Ok(Length(0))),
            (
                "Content-Length: 42\r\nContent-Length: 42\r\n",
                Ok(Length(42)),
            ),
            ("Content-Length: 42, 42\r\n", Ok(Length(42))),
            (
                "Content-Length: 0\r\nContent-Length: 96\r\n",
                Err(BadLength),
            ),
            ("Content-Length: +96\r\n", Err(BadLength)),
            ("Content-Length: -1\r\n", Err(BadLength)),
            ("Content-Length: \r\n", Err(BadLength)),
            ("Content-Length: 99999999999999999999\r\n", Err(BadLength)),
            ("Transfer-Encoding: chunked\r\n", Ok(Chunked)),
            (
                "Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n",
                Err(Both),
            ),
            ("Transfer-Encoding: gzip, chunked\r\n", Err(UnknownCoding)),
            ("Transfer-Encoding: chunked, chunked\r\n", Err(BadCoding)),
            ("Transfer-Encoding: ,\r\n", Err(BadCoding)),
        ];
        for (headers, want) in cases {
            assert_eq!(framing_of(headers), want, "{headers:?}");
        }
        assert_eq!(UnknownCoding.refusal().status(), 501);
        assert_eq!(Both.refusal().status(), 400);
    }

    /// Feed `body` in pieces of `step` bytes; the bytes that were the body.
    fn chunked(body: &[u8], step: usize, limit: u64) -> Result<usize, ChunkError> {
        let mut d = Chunked::new(limit);
        let mut used = 0;
        for piece in body.chunks(step.max(1)) {
            used += d.feed(piece)?;
            if d.done() {
                return Ok(used);
            }
        }
        Err(ChunkError::Malformed)
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let cases: [(&[u8], usize); 5] = [
            (b"0\r\n\r\n", 5),
            (b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1", 15),
            (
                b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nnext",
                44,
            ),
            (b"3\nabc\n0\n\n", 9),
            (b"0; a=\"b\"\r\n\r\n", 12),
        ];
        for (body, want) in cases {
            for step in [1, 2, 7, body.len()] {
                assert_eq!(chunked(body, step, 1024), Ok(want), "{body:?} by {step}");
            }
        }
        for bad in [&b"\r\n"[..], b"x\r\n", b"5\r\nhelloXX", b"-1\r\n", b";\r\n"] {
            assert_eq!(chunked(bad, 1, 1024), Err(ChunkError::Malformed), "{bad:?}");
        }
        assert_eq!(chunked(b"401\r\n", 1, 1024), Err(ChunkError::TooLarge));
        assert_eq!(
            chunked(b"ffffffffffffffffffff\r\n", 3, 1024),
            Err(ChunkError::TooLarge)
        );
        let mut two = b"200\r\n".to_vec();
        two.extend(std::iter::repeat_n(b'a', 0x200));
        two.extend_from_slice(b"\r\n201\r\n");
        assert_eq!(
            chunked(&two, 64, 1024),
            Err(ChunkError::TooLarge),
            "the sum counts"
        );
        let long_ext = format!("1;{}\r\n", "e".repeat(2000));
        assert_eq!(
            chunked(long_ext.as_bytes(), 100, 1024),
            Err(ChunkError::TooLarge)
        );
    }
}
