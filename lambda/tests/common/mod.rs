//! Helpers shared by the backend's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

pub mod load;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// moto_server as DynamoDB (`signer::testing::MotoServer`), with the dummy
/// credentials the SDK needs set in this test process.
pub struct Moto {
    server: signer::testing::MotoServer,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let server = signer::testing::MotoServer::start().unwrap();
        for (k, v) in Self::env() {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_PROFILE");
        let port = server.port;
        Self { server, port }
    }

    /// The environment a process needs to reach this emulator.
    pub fn env() -> [(&'static str, &'static str); 4] {
        signer::testing::MotoServer::env()
    }

    /// A `dynamodb:` store URI with tables named `prefix-…` here.
    pub fn store_uri(&self, prefix: &str) -> String {
        format!("dynamodb:{prefix}?endpoint={}", self.server.endpoint())
    }
}

/// What the function answered to one invocation.
#[derive(Debug)]
pub struct Invocation {
    /// The request id the runtime API gave it.
    pub request_id: String,
    /// `response` or `error`.
    pub kind: String,
    /// The body the function posted.
    pub body: String,
    /// When the answer arrived.
    pub at: Instant,
}

/// A local AWS Lambda Runtime API (the interface the Lambda service offers a
/// custom runtime): hands out queued events on `GET …/invocation/next` and
/// collects what the function posts back. Runs until the test ends.
pub struct RuntimeApi {
    pub port: u16,
    events: std::sync::mpsc::Sender<String>,
    pub answers: std::sync::mpsc::Receiver<Invocation>,
}

impl RuntimeApi {
    pub fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events, queued) = std::sync::mpsc::channel::<String>();
        let queued = Arc::new(Mutex::new(queued));
        let (answer, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut next_id = 0u64;
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                next_id += 1;
                let first_id = next_id * 1000;
                let queued = Arc::clone(&queued);
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    let mut served = first_id;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, path) = (
                            parts.next().unwrap_or("").to_owned(),
                            parts.next().unwrap_or("").to_owned(),
                        );
                        let mut length = 0usize;
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    length = v.trim().parse().unwrap();
                                }
                            }
                        }
                        let mut body = vec![0u8; length];
                        reader.read_exact(&mut body).unwrap();
                        if method == "GET" && path.ends_with("/runtime/invocation/next") {
                            let Ok(event) = queued.lock().unwrap().recv() else {
                                return;
                            };
                            served += 1;
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis()
                                + 30_000;
                            write!(
                                conn,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{served}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:eu-north-1:123456789012:function:provisiond\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n{event}",
                                event.len()
                            )
                            .unwrap();
                        } else if method == "POST" {
                            let segments: Vec<&str> = path.split('/').collect();
                            let kind = segments.last().copied().unwrap_or("").to_owned();
                            let request_id = segments
                                .len()
                                .checked_sub(2)
                                .map(|i| segments[i].to_owned())
                                .unwrap_or_default();
                            let _ = answer.send(Invocation {
                                request_id,
                                kind,
                                body: String::from_utf8_lossy(&body).into_owned(),
                                at: Instant::now(),
                            });
                            write!(
                                conn,
                                "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{{\"status\":\"OK\"}}"
                            )
                            .unwrap();
                        } else {
                            write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                                .unwrap();
                        }
                    }
                });
            }
        });
        Self {
            port,
            events,
            answers,
        }
    }

    /// Queue an event for the function.
    pub fn invoke(&self, event: &serde_json::Value) {
        self.events.send(event.to_string()).unwrap();
    }

    /// The next answer (within 30 s).
    pub fn answer(&self) -> Invocation {
        self.answers
            .recv_timeout(Duration::from_secs(30))
            .expect("the function did not answer")
    }

    /// The environment the Lambda service gives a function.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", self.port)),
            ("AWS_LAMBDA_FUNCTION_NAME", "provisiond".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/provisiond".into()),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ]
    }
}

/// Check a log against the events expected, in the order they happened:
/// the same events, and each chain's entries in that order (a log of many
/// chains records no order between chains). `key` picks what is compared.
pub fn assert_log_is<T: PartialEq + std::fmt::Debug>(
    log: &[lambda::audit::ChainedEntry],
    key: impl Fn(&lambda::audit::ChainedEntry) -> T,
    expected: &[T],
) {
    let mut unmatched: Vec<Option<&T>> = expected.iter().map(Some).collect();
    let mut after = std::collections::BTreeMap::<u32, usize>::new();
    for e in log {
        let k = key(e);
        let from = after.get(&e.chain).copied().unwrap_or(0);
        let at = (from..unmatched.len())
            .find(|&i| unmatched[i] == Some(&k))
            .unwrap_or_else(|| {
                panic!(
                    "{k:?} (chain {} entry {}) is not expected after the chain's earlier entries: expected {expected:?}",
                    e.chain, e.seq
                )
            });
        unmatched[at] = None;
        after.insert(e.chain, at + 1);
    }
    let missing: Vec<&T> = unmatched.into_iter().flatten().collect();
    assert!(missing.is_empty(), "not in the log: {missing:?}");
}
