//! Authorization values: Basic (either credential form) and Digest.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rendezvous::wire::authorization_uuid(text);
    }
});
