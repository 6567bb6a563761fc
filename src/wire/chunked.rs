//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally:
//! the registrar finds where a request body ends, a client takes the data
//! of a response body. Every line and the data are bounded.

use crate::limits::MAX_HEAD_BYTES;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Not the chunked coding of RFC 9112 §7.1.
    Malformed,
    /// More data than the limit, or an over-long size or trailer line.
    TooLarge,
}

/// Where a [`Chunked`] decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far and whether a digit was seen.
    Size {
        n: u64,
        digit: bool,
    },
    /// In a chunk extension, up to the end of the line.
    Ext {
        n: u64,
    },
    /// After the size line's CR.
    SizeLf {
        n: u64,
    },
    /// Inside chunk data.
    Data(u64),
    /// After chunk data: its CRLF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After the final CR.
    EndLf,
    Done,
}

/// A decoder of a chunked body that only finds its end (the registrar API
/// reads request bodies and drops them), with the body, each size line and
/// the trailers bounded.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: ChunkState,
    /// Data bytes so far.
    body: u64,
    /// Bytes of the current size line or of all trailers.
    line: usize,
    limit: u64,
}

/// The longest chunk-size line (with extensions) and the most trailer bytes.
const MAX_CHUNK_LINE: usize = 1024;

impl Chunked {
    /// A decoder allowing `limit` bytes of data.
    pub fn new(limit: u64) -> Chunked {
        Chunked {
            state: ChunkState::Size { n: 0, digit: false },
            body: 0,
            line: 0,
            limit,
        }
    }

    /// Whether the whole body has been seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Take bytes of the body; returns how many belonged to it (fewer than
    /// given once it ended: the rest is the next request).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        self.feed_into(bytes, None)
    }

    /// As [`Chunked::feed`], appending the data (without the framing) to
    /// `data` when given (a client reading a chunked response body).
    pub fn feed_into(&mut self, bytes: &[u8], mut data: Option<&mut Vec<u8>>) -> Result<usize, ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() && self.state != Done {
            if let Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                if let Some(d) = data.as_deref_mut() {
                    d.extend_from_slice(&bytes[i..i + take as usize]);
                }
                i += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data(left - take)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line += 1;
            let line_limit = matches!(self.state, TrailerStart | Trailer | EndLf)
                .then_some(MAX_HEAD_BYTES)
                .unwrap_or(MAX_CHUNK_LINE);
            if self.line > line_limit {
                return Err(ChunkError::TooLarge);
            }
            self.state = match (self.state, b) {
                (Size { n, .. }, b) if b.is_ascii_hexdigit() => {
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    let n = n.saturating_mul(16).saturating_add(d);
                    if n > self.limit {
                        return Err(ChunkError::TooLarge);
                    }
                    Size { n, digit: true }
                }
                (Size { n, digit: true }, b';' | b' ' | b'\t') => Ext { n },
                (Size { n, digit: true } | Ext { n }, b'\r') => SizeLf { n },
                (Size { n, digit: true } | Ext { n } | SizeLf { n }, b'\n') => {
                    self.line = 0;
                    if n == 0 {
                        TrailerStart
                    } else {
                        self.body += n;
                        if self.body > self.limit {
                            return Err(ChunkError::TooLarge);
                        }
                        Data(n)
                    }
                }
                (Ext { n }, _) => Ext { n },
                (DataCr, b'\r') => DataLf,
                (DataCr | DataLf, b'\n') => {
                    self.line = 0;
                    Size { n: 0, digit: false }
                }
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | EndLf, b'\n') => Done,
                (Trailer, b'\n') => TrailerStart,
                (TrailerStart | Trailer, _) => Trailer,
                _ => return Err(ChunkError::Malformed),
            };
        }
        Ok(i)
    }
}
