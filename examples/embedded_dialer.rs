//! A program that reaches a hidden server through the rendezvous server
//! with the library, as `rendezvous connect` does: it gets a `TcpStream`
//! already paired with the hidden side, sends one line and prints what comes
//! back.
//!
//!     cargo run --example embedded_dialer -- gw.conf 'hello'
//!
//! The provisioning file needs only `server`, `uuid` and the pin (a mobile
//! client needs no secret).

use rendezvous::{ClientFlags, Dialer, Settings};
use std::io::{Read, Write};
use std::net::Shutdown;

fn main() -> Result<(), rendezvous::Error> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(line)) = (args.next(), args.next()) else {
        eprintln!("usage: embedded_dialer PROVISIONING-FILE LINE");
        std::process::exit(2);
    };
    let flags = ClientFlags {
        config: Some(config.into()),
        ..ClientFlags::default()
    };
    let settings = Settings::resolve(&flags, false)?;
    let mut stream = Dialer::new(&settings)?.dial()?;
    let io = |e| rendezvous::Error::io("talk to the hidden server", e);
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(io)?;
    stream.shutdown(Shutdown::Write).map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(io)?;
    print!("{answer}");
    Ok(())
}
