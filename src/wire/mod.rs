//! What both sides speak, and nothing else: the rendezvous server's lines,
//! the triple, how a request names a hidden server, request heads and
//! their framing, responses, and HTTP dates. The server, the agents and the
//! fuzz targets parse with these same functions.

pub mod authorization;
pub mod chunked;
pub mod cookie_line;
pub mod date;
pub mod framing;
pub mod head;
pub mod response;
pub mod status;
pub mod triple;

pub use authorization::{
    authorization_uuid, parse_connect_target, strip_authorization, ConnectAuth, ConnectError,
};
pub use cookie_line::{err_line, parse_first_line, FirstLine, TakeError, OK};
pub use date::parse_http_date;
pub use chunked::{ChunkError, Chunked};
pub use framing::Framing;
pub use head::{Head, HeadError, HeadReader, TcpBacked};
pub use response::{read_response, ClientResponse, Response};
// For the tests and fuzz targets: the crate reaches these by their files.
#[cfg(feature = "internals")]
pub use {
    date::http_date,
    framing::FramingError,
    head::{parse_query, percent_decode},
    response::{error_body, reason},
};
pub use status::Refusal;
pub use triple::Triple;
