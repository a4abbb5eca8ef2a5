//! `provisiond serve` over real HTTP on 127.0.0.1, and its data surviving a
//! `kill -9` and restart.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    token: String,
}

/// `provisiond token add`: the token is alone on the last line of stdout.
fn add_token(db: &std::path::Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "add", "--name", name, "--role", role, "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().to_owned();
    assert!(token.starts_with("pvd_") && token.len() == 68, "{stdout}");
    token
}

impl Server {
    fn start(db: &std::path::Path, token: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
            .arg(format!("sqlite:{}", db.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "provisiond did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            token: token.to_owned(),
        }
    }

    fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status: u16 = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        (
            status,
            serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
        )
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serials_answered_before_a_kill_9_are_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let token = add_token(&db, "line-1", "factory");
    let server = Server::start(&db, &token);
    let mut answered = Vec::new();
    for i in 0..50u32 {
        let (status, v) = server.post(
            "/v1/provision",
            &format!(r#"{{"hw_id":"{:016x}"}}"#, 0x1000 + i),
        );
        assert_eq!(status, 200);
        answered.push((0x1000 + i, v["serial"].as_u64().unwrap()));
    }
    server.kill9();
    let server = Server::start(&db, &token);
    for (chip, serial) in &answered {
        let (status, v) = server.post("/v1/provision", &format!(r#"{{"hw_id":"{chip:016x}"}}"#));
        assert_eq!(status, 200);
        assert_eq!(v["serial"].as_u64().unwrap(), *serial);
        assert_eq!(v["created"], false);
    }
    let serials: Vec<u64> = answered.iter().map(|a| a.1).collect();
    assert_eq!(serials, (1..=50).collect::<Vec<_>>());
    let (status, v) = server.post("/v1/provision", r#"{"hw_id":"zz"}"#);
    assert_eq!((status, v["error"].as_str()), (400, Some("bad_hw_id")));
}
