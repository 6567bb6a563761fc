//! Every refusal the registrar answers, in one table: its status, whether
//! the JSON error body calls it permanent, and its diagnostic text. The
//! server writes its error responses from here and nowhere else, the
//! clients read answers back through [`Refusal::parse`], and a test checks
//! the table against the STATUS CODES of rendezvous-protocol(7).

use crate::wire::response::Response;

/// A refusal of the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// 400: the request head cannot be parsed.
    MalformedHead,
    /// 400: an ID that is not a UUID.
    MalformedUuid,
    /// 400: `response` and `cookie` together.
    ResponseAndCookie,
    /// 400: a `Host` that is no host name or address, when a triple needs it.
    MalformedHost,
    /// 400: a `Content-Length` that is not `1*DIGIT`, or several that differ.
    MalformedContentLength,
    /// 400: a `Transfer-Encoding` that is not one `chunked`.
    MalformedTransferEncoding,
    /// 400: `Transfer-Encoding` with `Content-Length`.
    TransferEncodingAndLength,
    /// 400: a chunked body that is not the chunked coding.
    MalformedChunkedBody,
    /// 400: the connection ended inside the body.
    BodyCutShort,
    /// 400: an `Authorization` that names no UUID.
    MalformedAuthorization,
    /// 401: no dispatch rule matched (the Digest and Basic challenge; the
    /// connection stays open).
    Challenge,
    /// 401: a wrong, replayed or wrong-length token, or an unknown UUID.
    AuthenticationFailed,
    /// 401: a cookie that is not live.
    UnknownCookie,
    /// 403: a `CONNECT` target that is not `uuid:ID`.
    NotUuidTarget,
    /// 404: a lookup for a UUID without a live registration.
    NotRegistered,
    /// 404: no waiting connection within the pair timeout.
    NoHiddenServer,
    /// 404: the registrar API with `--rendezvous none`.
    NotConfigured,
    /// 404: an unknown path under `/.well-known/rendezvous/`.
    NoSuchEndpoint,
    /// 405: `GET` with `response` or `cookie`.
    UsePut,
    /// 405: `PUT` without them.
    UseGet,
    /// 407: a `CONNECT` with neither `response` nor `cookie`.
    NoCredentials,
    /// 408: a request head not complete in time.
    HeadTimedOut,
    /// 408: a request body not complete in time.
    BodyTimedOut,
    /// 409: data after a `CONNECT`, before its answer.
    DataBeforeAnswer,
    /// 413: more than 64 KiB of body, or an over-long chunk line or trailer.
    BodyTooLarge,
    /// 429: refused by the failure limits.
    TooManyFailures,
    /// 431: a head over 16 KiB.
    HeadTooLarge,
    /// 431: more than 64 header lines.
    TooManyHeaders,
    /// 500: a state the server should never reach.
    Internal,
    /// 500: a triple without `Host` when the local address is unknown.
    NoLocalAddress,
    /// 501: a transfer coding other than `chunked`.
    CodingNotImplemented,
    /// 503: the shared store cannot be asked, so a token cannot be judged.
    StoreUnavailable,
}

use Refusal::*;

/// The table: refusal, status, permanent, diagnostic.
const TABLE: [(Refusal, u16, bool, &str); 32] = [
    (MalformedHead, 400, true, "malformed head"),
    (MalformedUuid, 400, true, "malformed uuid"),
    (
        ResponseAndCookie,
        400,
        true,
        "give response or cookie, not both",
    ),
    (MalformedHost, 400, true, "malformed Host"),
    (
        MalformedContentLength,
        400,
        true,
        "malformed Content-Length",
    ),
    (
        MalformedTransferEncoding,
        400,
        true,
        "malformed Transfer-Encoding",
    ),
    (
        TransferEncodingAndLength,
        400,
        true,
        "Transfer-Encoding and Content-Length together",
    ),
    (MalformedChunkedBody, 400, true, "malformed chunked body"),
    (BodyCutShort, 400, true, "body cut short"),
    (MalformedAuthorization, 400, true, "malformed authorization"),
    (
        Challenge,
        401,
        false,
        "name the hidden server: user name = its UUID",
    ),
    (AuthenticationFailed, 401, false, "authentication failed"),
    (UnknownCookie, 401, false, "unknown or expired cookie"),
    (NotUuidTarget, 403, true, "target is not uuid:ID"),
    (NotRegistered, 404, false, "not registered"),
    (NoHiddenServer, 404, false, "no hidden server waiting"),
    (
        NotConfigured,
        404,
        true,
        "not configured for the generic protocol",
    ),
    (NoSuchEndpoint, 404, true, "no such endpoint"),
    (UsePut, 405, true, "use PUT here"),
    (UseGet, 405, true, "use GET here"),
    (NoCredentials, 407, true, "response or cookie required"),
    (HeadTimedOut, 408, true, "head timed out"),
    (BodyTimedOut, 408, true, "body timed out"),
    (DataBeforeAnswer, 409, true, "data before 200"),
    (BodyTooLarge, 413, true, "body too large"),
    (TooManyFailures, 429, false, "too many failures; try later"),
    (HeadTooLarge, 431, true, "head too large"),
    (TooManyHeaders, 431, true, "too many headers"),
    (Internal, 500, false, "internal error"),
    (NoLocalAddress, 500, false, "no local address"),
    (
        CodingNotImplemented,
        501,
        true,
        "transfer coding not implemented",
    ),
    (
        StoreUnavailable,
        503,
        false,
        "state store unavailable; try later",
    ),
];

impl Refusal {
    fn row(self) -> (u16, bool, &'static str) {
        TABLE
            .iter()
            .find(|(r, ..)| *r == self)
            .map_or((500, false, "internal error"), |(_, s, p, t)| (*s, *p, *t))
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        self.row().0
    }

    /// The `permanent` member of the error body: retrying the same request
    /// cannot succeed.
    pub fn permanent(self) -> bool {
        self.row().1
    }

    /// The diagnostic text (never peer data).
    pub fn text(self) -> &'static str {
        self.row().2
    }

    /// The error response. It closes the connection, but for the challenge.
    pub fn response(self) -> Response {
        let mut r = Response::error(self.status(), self.permanent(), self.text());
        r.close = self != Challenge;
        r
    }

    /// The refusal an answer names, by its status and diagnostic: how the
    /// clients read the registrar's errors.
    pub fn parse(status: u16, diagnostic: &str) -> Option<Refusal> {
        TABLE
            .iter()
            .find(|(_, s, _, t)| *s == status && *t == diagnostic)
            .map(|(r, ..)| *r)
    }

    /// The refusal whose diagnostic is `diagnostic`, whatever the status (a
    /// server that answers its errors with 200, as the original does).
    pub fn by_text(diagnostic: &str) -> Option<Refusal> {
        TABLE.iter().find(|(.., t)| *t == diagnostic).map(|(r, ..)| *r)
    }

    /// Every refusal, status and diagnostic, in table order.
    #[cfg(any(test, feature = "internals"))]
    pub fn table() -> impl Iterator<Item = (Refusal, u16, bool, &'static str)> {
        TABLE.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_in_the_table_once_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for (r, status, permanent, text) in Refusal::table() {
            assert!(seen.insert(r), "{r:?} twice");
            assert_eq!(
                (r.status(), r.permanent(), r.text()),
                (status, permanent, text)
            );
            assert_eq!(Refusal::parse(status, text), Some(r));
        }
        assert_eq!(Refusal::parse(401, "something else"), None);
        assert!(!Challenge.response().close);
        assert!(NotRegistered.response().close);
    }
}
