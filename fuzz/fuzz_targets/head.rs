//! The request head reader fed in two pieces, then everything derived from a
//! head: query, path, summary, keep-alive, routing, Authorization stripping,
//! the body's framing and, when chunked, the decoder over what followed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rendezvous::wire::HeadReader;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len().max(1)));
    let mut r = HeadReader::new();
    let head = match r.feed(&data[..split]) {
        Ok(Some(h)) => Some(h),
        Ok(None) => r.feed(&data[split..]).ok().flatten(),
        Err(_) => None,
    };
    if let Some(h) = head {
        let _ = h.query();
        let _ = h.path();
        let _ = h.summary();
        let _ = h.keep_alive();
        let _ = rendezvous::server::registrar::route(&h);
        let stripped = rendezvous::wire::strip_authorization(&h.raw);
        assert!(stripped.len() <= h.raw.len());
        let rest = r.take_buffered();
        if let Ok(rendezvous::wire::Framing::Chunked) = h.framing() {
            let mut d = rendezvous::wire::Chunked::new(64 * 1024);
            if let Ok(used) = d.feed(&rest) {
                assert!(used <= rest.len());
            }
        }
    }
});
