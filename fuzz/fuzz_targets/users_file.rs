//! The users file parser, and the round trip of whatever it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rendezvous::users::Users;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(users) = Users::parse(text, Path::new("users")) {
            let again = Users::parse(&users.render(), Path::new("users")).expect("round trip");
            assert_eq!(again.len(), users.len());
        }
    }
});
