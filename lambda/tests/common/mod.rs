//! Helpers shared by the backend's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
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

/// moto_server as DynamoDB on a free loopback port (through the project's
/// launcher), stopped on drop. Sets the dummy credentials the SDK needs in
/// this test process.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let python = std::env::var("VENV_PYTHON").unwrap_or_else(|_| {
            panic!("VENV_PYTHON is not set: run the tests through scripts/test.sh")
        });
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/moto_server.py");
        let port = free_port();
        let child = Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "moto_server");
        for (k, v) in Self::env() {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_PROFILE");
        Self { child, port }
    }

    /// The environment a process needs to reach this emulator.
    pub fn env() -> [(&'static str, &'static str); 4] {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "eu-north-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }

    /// A `dynamodb:` store URI with tables named `prefix-…` here.
    pub fn store_uri(&self, prefix: &str) -> String {
        format!("dynamodb:{prefix}?endpoint=http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
