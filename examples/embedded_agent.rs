//! A gateway's own daemon that embeds the hidden server's agent instead of
//! running `rendezvous expose`: the same agent, started and stopped from
//! the daemon's code.
//!
//!     cargo run --example embedded_agent -- gw.conf 127.0.0.1:22 [SECONDS]
//!
//! `gw.conf` is the provisioning file `rendezvousd user add` wrote (it holds
//! the secret, so keep it mode 0600). The agent keeps connections waiting at
//! the server and relays each mobile client to the local service; here it
//! stops after SECONDS (default: runs until killed).

use rendezvous::{Agent, ClientFlags, ExposeOpts, Settings};
use std::time::Duration;

fn main() -> Result<(), rendezvous::Error> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(to)) = (args.next(), args.next()) else {
        eprintln!("usage: embedded_agent PROVISIONING-FILE HOST:PORT [SECONDS]");
        std::process::exit(2);
    };
    let flags = ClientFlags {
        config: Some(config.into()),
        ..ClientFlags::default()
    };
    let settings = Settings::resolve(&flags, true)?;
    let agent = Agent::new(
        &settings,
        ExposeOpts {
            to,
            ..ExposeOpts::default()
        },
    )?;
    if let Some(secs) = args.next().and_then(|s| s.parse().ok()) {
        // The daemon decides when the agent stops: here, after a while.
        let a = agent.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            a.stop();
        });
    }
    agent.run()
}
