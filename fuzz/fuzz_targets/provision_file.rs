//! The provisioning file parser, and the round trip of whatever it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rendezvous::provision::Provision;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = Provision::parse(text, Path::new("p")) {
            Provision::parse(&p.render(), Path::new("p")).expect("round trip");
        }
    }
});
