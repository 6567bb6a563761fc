//! A `Date` header value from the registrar (the agent reads it to tell a
//! wrong local clock from a wrong secret): whatever parses formats back to
//! the same text (a leap second, `:60`, reads and formats as `:59`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rendezvous::wire::{http_date, parse_http_date};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(t) = parse_http_date(text) {
            let again = http_date(t);
            assert_eq!(parse_http_date(&again), Some(t));
            if !text.trim().ends_with(":60 GMT") {
                assert_eq!(again, text.trim());
            }
        }
    }
});
