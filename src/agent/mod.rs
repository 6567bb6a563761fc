//! The client side: the hidden server's agent (`expose`), the mobile
//! client (`connect`, `lookup`), their registrar client, their side of
//! the rendezvous server, and their settings.
//! It depends on `wire`, `relay`, `tls` and the leaves, never on `server`.

pub mod client;
pub mod dial;
mod early;
pub mod expose;
pub mod rendezvous;
mod resolve;
pub mod settings;
mod spare;
