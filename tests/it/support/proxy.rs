//! A TCP proxy on a loopback port in front of a real server, that a test
//! can take down and bring back: a real outage, as the client sees it
//! (refused connections, dropped ones), of a server other tests share.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Proxy {
    port: u16,
    target: u16,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Forwards a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut proxy = Proxy {
            port,
            target,
            up: Arc::new(AtomicBool::new(false)),
            streams: Arc::new(Mutex::new(Vec::new())),
            accept: None,
        };
        proxy.up();
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts accepting again, on the same port.
    pub fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        self.up.store(true, Ordering::SeqCst);
        let (up, streams, target) = (self.up.clone(), self.streams.clone(), self.target);
        self.accept = Some(thread::spawn(move || {
            for client in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut held = streams.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        }));
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and drops the
        // listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            accept.join().unwrap();
        }
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.down();
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}
