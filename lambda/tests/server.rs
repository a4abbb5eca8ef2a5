//! `provisiond serve` over real HTTP on 127.0.0.1: tokens made with
//! `provisiond token add`, 64 concurrent clients, and a `kill -9` under load.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};

use common::load::{self, Client};

struct Server {
    child: Child,
    port: u16,
}

/// A child process killed when dropped, so a failing test leaves none behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    fn start(db: &std::path::Path) -> Self {
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
            .arg(format!("sqlite:{}", db.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        common::wait_for_port(port, "provisiond");
        Self { child, port }
    }

    fn kill9(&mut self) {
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

fn provision_body(hw_id: u64) -> (String, String) {
    (
        "/v1/provision".into(),
        format!(r#"{{"hw_id":"{hw_id:016x}"}}"#),
    )
}

fn serial_of(a: &load::Answer) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&a.response).unwrap();
    v["serial"].as_u64().unwrap()
}

/// Every serial in the registry file: must be exactly 1..=N.
fn stored_serials(db: &std::path::Path) -> Vec<u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT serial FROM devices ORDER BY serial")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sixty_four_clients_two_thousand_requests_five_hundred_chips() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let token = add_token(&db, "line-1", "factory");
    let server = Server::start(&db);
    let chips = 500u64;
    let answers = load::run(server.port, &token, 64, 2000, |c, i| {
        provision_body(0x1000 + (c as u64 * 7919 + i as u64 * 31) % chips)
    });
    assert_eq!(answers.len(), 64 * 2000);
    let mut by_chip: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for a in &answers {
        assert_eq!(a.status, 200, "{a:?}");
        by_chip
            .entry(a.body.clone())
            .or_default()
            .insert(serial_of(a));
    }
    assert_eq!(by_chip.len() as u64, chips);
    let serials: BTreeSet<u64> = by_chip
        .values()
        .map(|s| {
            assert_eq!(s.len(), 1, "one chip, several serials: {s:?}");
            *s.first().unwrap()
        })
        .collect();
    assert_eq!(serials, (1..=chips).collect());
    assert_eq!(stored_serials(&db), (1..=chips).collect::<Vec<_>>());

    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["audit", "verify", "--json", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The token's creation and every request.
    assert_eq!(v["entries"], 1 + 64 * 2000);
}

#[test]
fn serials_answered_before_a_kill_9_under_load_are_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let token = add_token(&db, "line-1", "factory");
    let mut server = Server::start(&db);
    let port = server.port;
    // 16 clients provision new chips until the server dies under them.
    let answers = std::thread::scope(|s| {
        let load = s.spawn(|| {
            load::run(port, &token, 16, 1_000_000, |c, i| {
                provision_body(((c as u64) << 32) | i as u64)
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        server.kill9();
        load.join().unwrap()
    });
    assert!(
        answers.len() > 100,
        "only {} answers before the kill",
        answers.len()
    );
    let stored = stored_serials(&db);
    assert_eq!(
        stored,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "serials after the crash must be 1..=N"
    );

    let server = Server::start(&db);
    let mut client = Client::connect(server.port, &token).unwrap();
    for a in &answers {
        assert_eq!(a.status, 200);
        let (status, again) = client.request("POST", &a.path, &a.body).unwrap();
        let v: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["serial"].as_u64(), Some(serial_of(a)), "{}", a.body);
        assert_eq!(v["created"], false);
    }
    // The next chip continues the sequence without a gap.
    let (_, v) = client
        .request("POST", "/v1/provision", r#"{"hw_id":"ffffffffffffffff"}"#)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serial"].as_u64(), Some(stored.len() as u64 + 1));
    let (status, v) = client
        .request("POST", "/v1/provision", r#"{"hw_id":"zz"}"#)
        .unwrap();
    assert_eq!(status, 400, "{v}");
}

#[test]
fn a_token_revoked_on_the_command_line_is_refused_by_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let store = format!("sqlite:{}", db.display());
    let token = add_token(&db, "line-1", "factory");
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "add", "--name", "line-2", "--role", "factory"])
        .args(["--valid-for", "90d", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid until"));
    let bad = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "add", "--name", "x", "--role", "factory"])
        .args(["--valid-for", "soon", "--store", &store])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let server = Server::start(&db);
    let mut client = Client::connect(server.port, &token).unwrap();
    let (status, _) = client
        .request("POST", "/v1/provision", r#"{"hw_id":"0000000000000001"}"#)
        .unwrap();
    assert_eq!(status, 200);

    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "revoke", "--name", "line-1", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The same connection, the next request: refused.
    let (status, body) = client
        .request("POST", "/v1/provision", r#"{"hw_id":"0000000000000002"}"#)
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token_revoked"), "{body}");

    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "list", "--json", "--store", &store])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let states: Vec<(&str, &str, bool)> = listed
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
                t["expires_at"].is_i64(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("line-1", "revoked", false), ("line-2", "usable", true)]
    );
    let unknown = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["token", "revoke", "--name", "nobody", "--store", &store])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no token named \"nobody\""));
}

#[test]
fn provisiond_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = signer::testing::TlsIdentity::create(dir.path()).unwrap();
    let db = dir.path().join("reg.db");
    let token = add_token(&db, "line-1", "factory");
    let port = common::free_port();
    let child = Running(
        Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store"])
            .arg(format!("sqlite:{}", db.display()))
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "provisiond");
    let url = format!("https://localhost:{port}/v1/provision");
    let curl = |ca: &std::path::Path| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-X", "POST", &url])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", r#"{"hw_id":"00000000000000aa"}"#])
            .arg("--cacert")
            .arg(ca)
            .output()
            .unwrap()
    };
    // A real client that trusts the CA gets an answer.
    let out = curl(&tls.ca);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serial"], 1);
    // Trusting another CA: curl refuses the server.
    let other = tempfile::tempdir().unwrap();
    let stranger = signer::testing::TlsIdentity::create(other.path()).unwrap();
    let out = curl(&stranger.ca);
    // (60, or 35 where OpenSSL fails the signature check in the handshake:
    // the stranger CA has the same name.)
    assert!(matches!(out.status.code(), Some(35 | 60)), "{out:?}");
    assert!(out.stdout.is_empty());
    // Plain HTTP on the TLS port gets no answer, and the server lives on.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/v1/devices/1"))
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert!(curl(&tls.ca).status.success());
    drop(child);

    // A bad identity stops the server before it listens.
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .arg("--tls-cert")
        .arg(&tls.key)
        .arg("--tls-key")
        .arg(&tls.key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{out:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args(["serve", "--store", "sqlite:x.db", "--tls-cert", "a.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--tls-cert needs --tls-key");
}

#[test]
fn every_request_is_logged_with_its_id_and_a_5xx_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let moto = common::Moto::start();
    let store = moto.store_uri("logs");
    // The deployment makes the tables; here the store does.
    drop(
        store
            .parse::<lambda::config::StoreUri>()
            .unwrap()
            .open()
            .wait()
            .unwrap(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .args([
            "token", "add", "--name", "l", "--role", "factory", "--store", &store,
        ])
        .envs(common::Moto::env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let log = dir.path().join("provisiond.log");
    let port = common::free_port();
    let child = Running(
        Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                &store,
            ])
            .envs(common::Moto::env())
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "provisiond");
    let curl = |id: &str| {
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "60", "-X", "POST"])
            .arg(format!("http://127.0.0.1:{port}/v1/provision"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "Content-Type: application/json"])
            .args(["-H", &format!("x-request-id: {id}")])
            .args(["-d", r#"{"hw_id":"00000000000000bb"}"#])
            .output()
            .unwrap()
    };
    let ok = String::from_utf8(curl("req-ok-1").stdout).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase().contains("x-request-id: req-ok-1"),
        "{ok}"
    );
    // The database goes away: the caller gets a bare 500, the log the cause.
    drop(moto);
    let failed = String::from_utf8(curl("req-fail-2").stdout).unwrap();
    assert!(failed.starts_with("HTTP/1.1 500"), "{failed}");
    assert!(failed.contains(r#""error":"internal""#), "{failed}");
    assert!(
        !failed.contains("dynamodb") && !failed.contains("127.0.0.1"),
        "{failed}"
    );
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("req-ok-1") && l.contains("status=200")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("req-fail-2")
            && l.contains("store failure")
            && l.contains("error=")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("req-fail-2") && l.contains("status=500")),
        "{text}"
    );
}

#[test]
fn orders_are_opened_and_listed_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("reg.db").display());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .args(args)
            .args(["--store", &store])
            .output()
            .unwrap()
    };
    let list = dir.path().join("ids.txt");
    std::fs::write(
        &list,
        "# lot 7\n1234567800000003\n1234567800000004\nnot-an-id\n",
    )
    .unwrap();
    let open = |list: &std::path::Path| {
        run(&[
            "order",
            "open",
            "--name",
            "po-7",
            "--product",
            "sensor",
            "--quantity",
            "2",
            "--valid-for",
            "30d",
            "--allow-list",
            list.to_str().unwrap(),
        ])
    };
    let bad = open(&list);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 4: not a hardware ID"),
        "{bad:?}"
    );
    std::fs::write(&list, "# lot 7\n1234567800000003\n1234567800000004\n").unwrap();
    let ok = open(&list);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("2 hardware IDs allowed"));
    let out = run(&["order", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["name"].as_str(),
            v["used"].as_u64(),
            v["quantity"].as_u64(),
            v["allow_list"].as_u64()
        ),
        (Some("po-7"), Some(0), Some(2), Some(2))
    );
    let token = run(&[
        "token", "add", "--name", "l7", "--role", "factory", "--order", "po-7",
    ]);
    assert!(token.status.success(), "{token:?}");
    let unknown = run(&[
        "token", "add", "--name", "l8", "--role", "factory", "--order", "po-x",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no order named \"po-x\""));
    let tokens = run(&["token", "list", "--json"]);
    assert!(String::from_utf8_lossy(&tokens.stdout).contains("\"name\":\"l7\""));
}
