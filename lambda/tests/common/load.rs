//! A small HTTP/1.1 load generator: each client one keep-alive connection,
//! one request at a time, every answer and its latency kept.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Which client sent it.
    pub client: usize,
    /// The request, as `make` gave it.
    pub path: String,
    /// The request body.
    pub body: String,
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub response: String,
    /// Time from sending to the whole answer.
    pub latency: Duration,
}

/// A keep-alive connection to the server.
pub struct Client {
    stream: BufReader<TcpStream>,
    token: String,
}

impl Client {
    pub fn connect(port: u16, token: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(s),
            token: token.to_owned(),
        })
    }

    /// POST (or GET with an empty body) and read the answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.token,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if self.stream.read_line(&mut h)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v
                        .trim()
                        .parse()
                        .map_err(|_| std::io::ErrorKind::InvalidData)?;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// `clients` clients each send `per_client` POSTs; `make(client, i)` gives
/// the path and body. Stops a client at its first connection error (the
/// server died); returns every answer.
pub fn run(
    port: u16,
    token: &str,
    clients: usize,
    per_client: usize,
    make: impl Fn(usize, usize) -> (String, String) + Sync,
) -> Vec<Answer> {
    std::thread::scope(|s| {
        let make = &make;
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(per_client);
                    let Ok(mut client) = Client::connect(port, token) else {
                        return out;
                    };
                    for i in 0..per_client {
                        let (path, body) = make(c, i);
                        let t = Instant::now();
                        let Ok((status, response)) = client.request("POST", &path, &body) else {
                            break;
                        };
                        out.push(Answer {
                            client: c,
                            path,
                            body,
                            status,
                            response,
                            latency: t.elapsed(),
                        });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// The `q` quantile (0..=1) of the latencies.
pub fn quantile(answers: &[Answer], q: f64) -> Duration {
    let mut l: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    l.sort();
    if l.is_empty() {
        return Duration::ZERO;
    }
    let i = ((l.len() - 1) as f64 * q).round() as usize;
    l[i]
}
