//! HTTP responses on both sides: the registrar's (status, headers, a JSON
//! body or the metrics text, and the `Date` every answer carries) and the
//! small reader the clients use for the registrar's answers.

use crate::limits::{CLIENT_TIMEOUT, MAX_HEADERS, MAX_HEAD_BYTES, MAX_RESPONSE_BYTES};
use crate::wire::date::http_date;
use std::io::{self, Read, Write};
use std::time::Instant;

/// The reason phrase for a status we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (JSON unless a header says otherwise).
    pub body: Vec<u8>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Response {
    /// A JSON `{"result": value}` 200 response, keeping the connection open.
    pub fn result(value: serde_json::Value) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: serde_json::json!({ "result": value })
                .to_string()
                .into_bytes(),
            close: false,
        }
    }

    /// A JSON error response; closes the connection.
    pub fn error(status: u16, permanent: bool, diagnostic: &str) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: error_body(permanent, diagnostic).into_bytes(),
            close: true,
        }
    }

    /// Add a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Write it (head and body in one write).
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            out.push_str("Content-Type: application/json\r\n");
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        // RFC 9110 §6.6.1; agents also use it to tell a wrong local clock
        // (the usual reason a TOTP code fails) from a wrong secret.
        out.push_str(&format!("Date: {}\r\n", http_date(crate::totp::now())));
        if self.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        w.write_all(&bytes)?;
        w.flush()
    }
}

/// `{"error":{"permanent":BOOL,"diagnostic":"TEXT"}}`
pub fn error_body(permanent: bool, diagnostic: &str) -> String {
    serde_json::json!({ "error": { "permanent": permanent, "diagnostic": diagnostic } }).to_string()
}

/// A response as the client side reads it.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A chunked body: the bytes already read after the head, then more from
/// `stream` until the last chunk and the trailers; the data alone. Bytes
/// after the body (a keep-alive connection's next response) are not read
/// beyond the buffer they came in, and dropped.
fn read_chunked<S: Read>(stream: &mut S, first: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let why = |e: crate::wire::chunked::ChunkError| match e {
        crate::wire::chunked::ChunkError::TooLarge => bad("response too large"),
        crate::wire::chunked::ChunkError::Malformed => bad("malformed chunked body"),
    };
    let mut decoder = crate::wire::chunked::Chunked::new(MAX_RESPONSE_BYTES as u64);
    let mut body = Vec::new();
    decoder.feed_into(first, Some(&mut body)).map_err(why)?;
    let mut chunk = [0u8; 4096];
    while !decoder.done() {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(bad("connection closed inside a chunked body")),
            Ok(k) => {
                decoder.feed_into(&chunk[..k], Some(&mut body)).map_err(why)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(body)
}

/// A reader that fails once its deadline passed (checked before each read;
/// the socket's own timeout bounds each read), so a registrar trickling a
/// byte at a time cannot hold a client past the deadline by more than one
/// read.
struct ByDeadline<'a, S> {
    inner: &'a mut S,
    deadline: Instant,
}

impl<S: Read> Read for ByDeadline<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "response not complete in time"));
        }
        self.inner.read(buf)
    }
}

/// Read one response (head, then a chunked body, a `Content-Length` body,
/// or one until EOF, as RFC 9112 §6.3 orders them), at most
/// [`MAX_RESPONSE_BYTES`] of body, within [`CLIENT_TIMEOUT`] (and one
/// read). A keep-alive connection is left positioned after the body.
pub fn read_response<S: Read>(stream: &mut S) -> io::Result<ClientResponse> {
    read_response_by(
        &mut ByDeadline {
            inner: stream,
            deadline: Instant::now() + CLIENT_TIMEOUT,
        },
    )
}

fn read_response_by<S: Read>(stream: &mut S) -> io::Result<ClientResponse> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let chunked = headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("transfer-encoding")
                        && v.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
                });
                if chunked {
                    let body = read_chunked(stream, &buf[n..])?;
                    return Ok(ClientResponse { status, headers, body });
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse::<usize>().ok());
                let mut body = buf[n..].to_vec();
                loop {
                    if len.is_some_and(|l| body.len() >= l) {
                        body.truncate(len.unwrap_or(0));
                        break;
                    }
                    if body.len() > MAX_RESPONSE_BYTES {
                        return Err(bad("response too large"));
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(k) => body.extend_from_slice(&chunk[..k]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // A peer that closes without close_notify still sent a whole body.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                }
                return Ok(ClientResponse {
                    status,
                    headers,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(bad("malformed response")),
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad("response head too large"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(bad("connection closed before a response")),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trip() {
        let r = Response::error(404, false, "no such \"thing\"").with_header("Allow", "GET");
        let mut out = Vec::new();
        r.write_to(&mut out).expect("write");
        let back = read_response(&mut &out[..]).expect("read");
        assert_eq!(back.status, 404);
        assert_eq!(back.header("allow"), Some("GET"));
        let v: serde_json::Value = serde_json::from_slice(&back.body).expect("json");
        assert_eq!(v["error"]["diagnostic"], "no such \"thing\"");
        assert_eq!(v["error"]["permanent"], false);
    }

    /// A chunked body that never ends, a chunk per read, as a registrar
    /// trickling bytes would send it.
    struct Trickle(usize);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let chunk: &[u8] = if self.0 == 0 {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                b"1\r\nx\r\n"
            };
            self.0 += 1;
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            Ok(n)
        }
    }

    #[test]
    fn a_response_stops_at_its_deadline() {
        let mut late = ByDeadline {
            inner: &mut Trickle(0),
            deadline: Instant::now() + std::time::Duration::from_millis(200),
        };
        let e = read_response_by(&mut late).expect_err("a body that never ends");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }
}
