//! The client side: the hidden server's agent (`expose`), the mobile
//! client (`connect`, `lookup`), and their registrar client and settings.
//! It depends on `wire`, `relay`, `tls` and the leaves, never on `server`.

pub mod client;
pub mod dial;
pub mod expose;
pub mod settings;
