//! CONNECT request targets (`uuid:ID?response=…` / `?cookie=…`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rendezvous::wire::parse_connect_target(text);
    }
});
