//! Keys in AWS KMS, against moto_server started by the test itself through
//! the project's launcher (scripts/moto_server.py), on 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A moto_server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        let python = std::env::var("VENV_PYTHON").unwrap_or_else(|_| {
            panic!("VENV_PYTHON is not set: run the tests through scripts/test.sh")
        });
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/moto_server.py");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    fn key(&self, alias: &str) -> String {
        format!(
            "awskms:///alias/{alias}?region=eu-north-1&endpoint=http://127.0.0.1:{}",
            self.port
        )
    }

    fn keytool(&self) -> Command {
        let mut c = keytool();
        c.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn digest_signatures_from_the_launcher_verify_with_getpublickey() {
    let moto = Moto::start();
    let key = moto.key("release");
    let made = generate_key(moto.keytool(), &key);
    let s = Scratch::new();
    let pem = s.path("kms.pub.pem");
    std::fs::write(
        &pem,
        ok(moto
            .keytool()
            .args(["key", "getpub", "-e", "pem", "-k", &key])),
    )
    .unwrap();

    // An image is far above KMS's 4 KiB RAW limit: this only works with DIGEST.
    let fw = s.firmware("fw.bin", 64 * 1024, 0);
    let out = s.path("signed.bin");
    ok(moto
        .keytool()
        .args([
            "image",
            "sign",
            "-k",
            &key,
            "-v",
            "2.0.0",
            "-H",
            "0x200",
            "--pad-header",
            "-S",
            "0x20000",
        ])
        .arg(&fw)
        .arg(&out));
    // The signature KMS made over the digest verifies with GetPublicKey's key:
    // what AWS documents, and what plain moto 5.2 gets wrong.
    ok(imgtool().arg("verify").arg("-k").arg(&pem).arg(&out));
    let listed: serde_json::Value = serde_json::from_str(&ok(moto
        .keytool()
        .args(["key", "list", "--json", "-k", &key])))
    .unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key_id"] == made["key_id"]));

    let again = run(moto
        .keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k", &key]));
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
}

#[test]
fn kms_failures_name_the_key_and_the_cause() {
    let moto = Moto::start();
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 1000, 0);
    let out = s.path("out.bin");
    let sign = |key: &str| {
        let _ = std::fs::remove_file(&out);
        run(moto
            .keytool()
            .args(["image", "sign", "-k", key])
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out))
    };
    let unknown = moto.key("nosuch");
    let o = sign(&unknown);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("alias/nosuch") && stderr(&o).contains("NotFoundException"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    let down = "awskms:///alias/x?region=eu-north-1&endpoint=http://127.0.0.1:9";
    let o = sign(down);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("alias/x") && stderr(&o).contains("GetPublicKey"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
