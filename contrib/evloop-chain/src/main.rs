//! Three single-threaded event-loop relays shaped like rendezvous's generic
//! chain, an echo service and the measuring client: see README.md.
//!
//!   evloop-chain b PORTFILE            listens for a (first port) and c
//!   evloop-chain c B_PORT SERVICE POOL parks POOL connections at b
//!   evloop-chain a PORTFILE B_PORT     listens for clients, spares to b
//!   evloop-chain echo PORTFILE         an echo service (thread per client)
//!   evloop-chain measure N DIRECT PORT...
//!       for each PORT, N exchanges, each after one with DIRECT; prints the
//!       setup p50 and p99 over direct

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

const FIRST: Token = Token(0);
const SECOND: Token = Token(1);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} missing or bad; see the top of src/main.rs"))
}

struct Conn {
    sock: TcpStream,
    peer: Option<Token>,
    /// Bytes for this socket that it did not take yet.
    pending: Vec<u8>,
}

/// One process's event loop and its connections.
struct Relay {
    poll: Poll,
    conns: HashMap<Token, Conn>,
    next: usize,
}

impl Relay {
    fn add(&mut self, mut sock: TcpStream) -> Token {
        let t = Token(self.next);
        self.next += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut sock, t, interest)
            .is_ok()
        {
            let _ = sock.set_nodelay(true);
            self.conns.insert(
                t,
                Conn {
                    sock,
                    peer: None,
                    pending: Vec::new(),
                },
            );
        }
        t
    }

    fn connect(&mut self, port: u16) -> Option<Token> {
        TcpStream::connect(local(port)).ok().map(|s| self.add(s))
    }

    fn pair(&mut self, a: Token, b: Token) {
        if let Some(c) = self.conns.get_mut(&a) {
            c.peer = Some(b);
        }
        if let Some(c) = self.conns.get_mut(&b) {
            c.peer = Some(a);
        }
    }

    fn send(&mut self, to: Token, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&to) else {
            return;
        };
        c.pending.extend_from_slice(data);
        self.flush(to);
    }

    /// Write what waits for `t`; a connect not finished yet fails with
    /// `NotConnected` or `WouldBlock` and is tried again when writable.
    fn flush(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        while !c.pending.is_empty() {
            match c.sock.write(&c.pending) {
                Ok(n) => {
                    c.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, t: Token) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            if let Some(p) = c.peer.and_then(|p| self.conns.get_mut(&p)) {
                let _ = p.sock.shutdown(Shutdown::Write);
                p.peer = None;
            }
        }
    }

    /// Readable: forward to the peer; bytes of an unpaired connection are
    /// returned for the caller to pair it.
    fn readable(&mut self, t: Token) -> Option<Vec<u8>> {
        let mut buf = [0u8; 16384];
        loop {
            let c = self.conns.get_mut(&t)?;
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    self.close(t);
                    return None;
                }
                Ok(n) => match c.peer {
                    Some(p) => self.send(p, &buf[..n]),
                    None => return Some(buf[..n].to_vec()),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(t);
                    return None;
                }
            }
        }
    }
}

fn listener(portfile_ports: &mut Vec<u16>) -> TcpListener {
    let l = TcpListener::bind(local(0)).expect("bind 127.0.0.1:0");
    portfile_ports.push(l.local_addr().expect("local address").port());
    l
}

fn relay(args: &[String]) {
    let mode = args[1].as_str();
    let mut r = Relay {
        poll: Poll::new().expect("epoll"),
        conns: HashMap::new(),
        next: 2,
    };
    let mut ports = Vec::new();
    let mut first = listener(&mut ports);
    let mut second = listener(&mut ports);
    let reg = r.poll.registry();
    reg.register(&mut first, FIRST, Interest::READABLE)
        .expect("register");
    if mode == "b" {
        reg.register(&mut second, SECOND, Interest::READABLE)
            .expect("register");
    }
    // a: the spare to b; b: parked connections of c, and connections of a
    // that sent before one was parked; c: where to park and the service.
    let mut spare = None;
    let mut parked: Vec<Token> = Vec::new();
    let mut waiting: Vec<(Token, Vec<u8>)> = Vec::new();
    let (mut peer_port, mut service) = (0u16, 0u16);
    match mode {
        "a" => {
            std::fs::write(&args[2], ports[0].to_string()).expect("port file");
            peer_port = arg(args, 3);
            spare = r.connect(peer_port);
        }
        "b" => std::fs::write(&args[2], format!("{} {}", ports[0], ports[1])).expect("port file"),
        _ => {
            peer_port = arg(args, 2);
            service = arg(args, 3);
            for _ in 0..arg::<usize>(args, 4) {
                r.connect(peer_port);
            }
        }
    }
    let mut events = Events::with_capacity(256);
    loop {
        if let Err(e) = r.poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        for e in events.iter() {
            let t = e.token();
            if t == FIRST || t == SECOND {
                let l = if t == FIRST { &first } else { &second };
                while let Ok((s, _)) = l.accept() {
                    let nt = r.add(s);
                    if t == SECOND {
                        match waiting.pop() {
                            Some((w, data)) => {
                                r.pair(w, nt);
                                r.send(nt, &data);
                            }
                            None => parked.push(nt),
                        }
                    }
                }
                continue;
            }
            if e.is_writable() {
                r.flush(t);
            }
            if !(e.is_readable() || e.is_read_closed() || e.is_error()) {
                continue;
            }
            let Some(data) = r.readable(t) else { continue };
            match mode {
                "a" => {
                    // A client's first bytes: on the spare, then the next spare.
                    let held = spare.take().filter(|s| r.conns.contains_key(s));
                    let Some(s) = held.or_else(|| r.connect(peer_port)) else {
                        r.close(t);
                        continue;
                    };
                    r.pair(t, s);
                    r.send(s, &data);
                    spare = r.connect(peer_port);
                }
                "b" => match parked.pop() {
                    Some(c) => {
                        r.pair(t, c);
                        r.send(c, &data);
                    }
                    None => waiting.push((t, data)),
                },
                _ => {
                    // Bytes on a parked connection: the service, then park another.
                    if let Some(s) = r.connect(service) {
                        r.pair(t, s);
                        r.send(s, &data);
                    } else {
                        r.close(t);
                    }
                    r.connect(peer_port);
                }
            }
        }
    }
}

fn echo(portfile: &str) {
    let l = std::net::TcpListener::bind(local(0)).expect("bind 127.0.0.1:0");
    std::fs::write(
        portfile,
        l.local_addr().expect("address").port().to_string(),
    )
    .expect("port file");
    for c in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut c = c;
            let _ = c.set_nodelay(true);
            let mut b = [0u8; 4096];
            while let Ok(n @ 1..) = c.read(&mut b) {
                if c.write_all(&b[..n]).is_err() {
                    return;
                }
            }
        });
    }
}

/// One connection: connect, 41 bytes, their echo; µs, or None on failure.
fn exchange(port: u16) -> Option<f64> {
    const LINE: &[u8] = b"a line of about forty bytes, and its end\n";
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(local(port)).ok()?;
    s.set_nodelay(true).ok()?;
    s.write_all(LINE).ok()?;
    let mut b = [0u8; 41];
    s.read_exact(&mut b).ok()?;
    Some(start.elapsed().as_secs_f64() * 1e6)
}

fn measure(args: &[String]) {
    let n: usize = arg(args, 2);
    let direct: u16 = arg(args, 3);
    for i in 4..args.len() {
        let port: u16 = arg(args, i);
        let (mut d, mut t) = (Vec::new(), Vec::new());
        for _ in 0..n {
            d.extend(exchange(direct));
            t.extend(exchange(port));
        }
        assert!(
            !d.is_empty() && !t.is_empty(),
            "no exchange through port {port}"
        );
        d.sort_by(f64::total_cmp);
        t.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p) as usize];
        println!(
            "port {port}: setup over direct p50 {:.0} µs, p99 {:.0} µs ({} of {n} served)",
            q(&t, 0.5) - q(&d, 0.5),
            q(&t, 0.99) - q(&d, 0.99),
            t.len()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("a" | "b" | "c") => relay(&args),
        Some("echo") => echo(args.get(2).expect("port file")),
        Some("measure") => measure(&args),
        _ => panic!("a mode: a, b, c, echo or measure; see the top of src/main.rs"),
    }
}
