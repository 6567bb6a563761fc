//! The first line on the rendezvous port.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rendezvous::wire::{parse_first_line, FirstLine};

fuzz_target!(|data: &[u8]| {
    if let FirstLine::Cookie { rest, .. } = parse_first_line(data) {
        assert!(rest <= data.len() && rest <= rendezvous::limits::MAX_COOKIE_LINE);
    }
});
